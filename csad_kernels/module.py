"""``CrossSampleMI``: the estimator network M of CSAD (heads My, Mb and learnable scalars)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from csad_kernels import _validation as check
from csad_kernels._dispatch import CUDA_GRAPH_BACKENDS
from csad_kernels.api import cs_mutual_information


def mlp(sizes: Sequence[int], *, last_relu: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ReLU between them (and after the last if
    ``last_relu``). The one MLP builder of the repository: the training package (python/) uses it too."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    if last_relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"{name} must list at least two positive ints (input, ..., output), got {sizes}")
    return sizes


class CrossSampleMI(nn.Module):
    """Cross-sample mutual-information estimator ``I(h^y; h^b)`` (CSAD): the heads My, Mb and the learnable scalars
    around :func:`csad_kernels.cs_mutual_information`, with the critic M of Eq. 3/8/9 (``similarity``) and any
    estimator kind (``estimator``: ``"cs"``, Eq. 2, by default; ``"jsd"``, Eq. 1; ``"ms"``).

    Args:
        sizes_y: layer sizes of the target head My, input first (paper: e.g. ``(64, 64, 32, 32)``).
        sizes_b: layer sizes of the bias head Mb; defaults to ``sizes_y``. Both heads must end in
            the same size.
        alpha, tau: initial values of the learnable scale ``alpha`` and of ``tau_y``, ``tau_b``.
        alpha_neg: for ``estimator="ms"``: initial w₋ (None: ``alpha``); ``alpha`` is then the initial w₊.
            Both are learned and kept positive by an exp parametrisation: parameters ``log_alpha`` and
            ``log_alpha_neg`` with w₊ = exp(log_alpha), w₋ = exp(log_alpha_neg).
        c, tolerance, similarity, estimator, reduction, backend: as in
            :func:`csad_kernels.cs_mutual_information`.
        cuda_graph: capture ``forward`` (heads and estimator) and its backward as CUDA graphs
            (``torch.cuda.make_graphed_callables``) and replay them: one capture per input signature (shapes,
            dtypes, which of bias/mask/groups are given, which tensors require grad, grad mode), a new signature
            is captured anew. CUDA inputs only (CPU inputs raise) and a GPU backend ("auto", "triton", "cuda":
            "reference" reads values on the host and "cpu" runs on the CPU, so both are refused). The returned
            tensor is the graph's static output, overwritten by the next call of the same signature; use it
            (or clone it) before then. Not for double backward.

    ``forward(hy (..., N, sizes_y[0]), hb (..., N, sizes_b[0]), bias=None, mask=None, groups=None) -> (...)``.
    The estimator maximises the result (loss ``-I``); the debiased encoder minimises it.
    """

    def __init__(
        self,
        sizes_y: Sequence[int] = (32, 32, 32),
        sizes_b: Sequence[int] | None = None,
        *,
        alpha: float = 1.0,
        alpha_neg: float | None = None,
        tau: float = 10.0,
        c: float = 0.5,
        tolerance: int = 0,
        similarity: str = "joint",
        estimator: str = "cs",
        reduction: str | None = None,
        backend: str = "auto",
        cuda_graph: bool = False,
    ) -> None:
        super().__init__()
        sizes_y = _check_sizes("sizes_y", sizes_y)
        sizes_b = _check_sizes("sizes_b", sizes_y if sizes_b is None else sizes_b)
        if sizes_y[-1] != sizes_b[-1]:
            raise ValueError(f"sizes_y and sizes_b must end in the same embedding size, got {sizes_y} and {sizes_b}")
        check.similarity_option(similarity)
        check.estimator_options(estimator, reduction)
        c = check.restart_probability(c)
        tolerance = check.tolerance_value(tolerance)
        check.backend_option(backend)
        _check_cuda_graph(cuda_graph, backend)
        self.head_y = mlp(sizes_y)
        self.head_b = mlp(sizes_b)
        if estimator == "ms":
            w_pos, w_neg = check.ms_scales(estimator, ("alpha", "alpha_neg"), alpha, alpha_neg, (1.0, None), "cpu")
            w_neg = w_pos if w_neg is None else w_neg
            self.log_alpha = nn.Parameter(torch.tensor(float(w_pos)).log())
            self.log_alpha_neg = nn.Parameter(torch.tensor(float(w_neg)).log())
        else:
            if alpha_neg is not None:
                raise ValueError(f"alpha_neg applies to estimator='ms' only; leave it None for {estimator!r}")
            self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.tau_y = nn.Parameter(torch.tensor(float(tau)))
        self.tau_b = nn.Parameter(torch.tensor(float(tau)))
        self.c, self.tolerance = c, tolerance
        self.similarity, self.estimator, self.reduction, self.backend = similarity, estimator, reduction, backend
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, Callable[..., torch.Tensor]] = {}  # input signature -> graphed forward

    def forward(
        self,
        hy: torch.Tensor,
        hb: torch.Tensor,
        bias: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for name, h, head in (("hy", hy, self.head_y), ("hb", hb, self.head_b)):
            expected = head[0].in_features
            if not isinstance(h, torch.Tensor) or h.dim() < 2 or h.shape[-1] != expected:
                shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                raise ValueError(f"{name} must have shape (..., N, {expected}), got {shape}")
        if self.cuda_graph:
            return self._graphed_forward(hy, hb, bias, mask, groups)
        return self.estimate(self.head_y(hy), self.head_b(hb), bias, mask, groups)

    def _graphed_forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """``forward`` replayed from the CUDA graphs of its input signature (captured on the first call)."""
        given = tuple(t for t in inputs if t is not None)
        require_cuda(given)
        params = tuple(self.parameters())
        key = (
            tuple(None if t is None else (t.shape, t.dtype, t.device, t.requires_grad) for t in inputs),
            tuple(p.requires_grad for p in params),
            torch.is_grad_enabled(),
        )
        graphed = self._graphs.get(key)
        if graphed is None:
            present = tuple(t is not None for t in inputs)

            def run(*tensors: torch.Tensor) -> torch.Tensor:  # tensors: the given inputs, then the parameters
                given_iter = iter(tensors[: len(given)])
                hy, hb, bias, mask, groups = (next(given_iter) if p else None for p in present)
                return self.estimate(self.head_y(hy), self.head_b(hb), bias, mask, groups)

            # the graph reads its inputs from static copies (the caller's tensors are not overwritten by replays);
            # the parameters are read in place
            static = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in given)
            graphed = torch.cuda.make_graphed_callables(run, static + params, allow_unused_input=True)
            self._graphs[key] = graphed
        return graphed(*given, *params)

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .double(), ...: the graphs read the old parameters
        self._graphs.clear()
        return super()._apply(fn, recurse)

    def scales(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(alpha, alpha_neg)`` as passed to the estimator: (w₊, w₋) for ms, (alpha, None) otherwise."""
        if self.estimator == "ms":
            return self.log_alpha.exp(), self.log_alpha_neg.exp()
        return self.alpha, None

    def estimate(
        self,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """I from embeddings already through the heads, ``u = My(h^y)``, ``v = Mb(h^b)`` ``(..., N, d)``: what
        ``forward`` computes after its heads (e.g. on u, v all-gathered from several processes)."""
        alpha, alpha_neg = self.scales()
        return cs_mutual_information(
            u,
            v,
            bias,
            mask,
            alpha=alpha,
            alpha_neg=alpha_neg,
            groups=groups,
            tau_y=self.tau_y,
            tau_b=self.tau_b,
            c=self.c,
            tolerance=self.tolerance,
            similarity=self.similarity,
            estimator=self.estimator,
            reduction=self.reduction,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"similarity={self.similarity!r}, estimator={self.estimator!r}, reduction={self.reduction!r}, "
            f"c={self.c}, tolerance={self.tolerance}, backend={self.backend!r}, cuda_graph={self.cuda_graph}"
        )


def _check_cuda_graph(cuda_graph: object, backend: str) -> None:
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be a bool, got {type(cuda_graph).__name__}")
    if cuda_graph and backend not in ("auto", *CUDA_GRAPH_BACKENDS):
        raise ValueError(
            f"cuda_graph=True needs a backend whose kernels a CUDA graph can capture ('auto', "
            f"{', '.join(repr(b) for b in CUDA_GRAPH_BACKENDS)}), got backend={backend!r}"
        )


def require_cuda(tensors: Sequence[torch.Tensor]) -> None:
    """CUDA graphs capture CUDA work only: every input must be a CUDA tensor."""
    devices = sorted({str(t.device) for t in tensors if t.device.type != "cuda"})
    if devices:
        raise RuntimeError(
            f"CrossSampleMI(cuda_graph=True) captures CUDA graphs and needs CUDA inputs, got tensors on {devices}; "
            "use cuda_graph=False on the CPU"
        )
