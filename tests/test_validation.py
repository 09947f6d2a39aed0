"""One case per input rule of DESIGN.md §8: a clear ValueError/TypeError naming the argument."""

import pytest
import torch

import csad_kernels as ck

F64 = torch.float64


def _uv(n=6, d=3):
    return torch.randn(n, d, dtype=F64), torch.randn(n, d, dtype=F64)


def _mi(u=None, v=None, bias="default", mask=None, **kw):
    du, dv = _uv()
    u = du if u is None else u
    v = dv if v is None else v
    if isinstance(bias, str):
        bias = torch.tensor([0, 0, 1, 1, 2, 2]) if mask is None else None
    args = dict(alpha=1.0, tau_y=10.0, tau_b=10.0)
    args.update(kw)
    return ck.cs_mutual_information(u, v, bias, mask, **args)


def _stochastic(n=4):
    return torch.full((n, n), 1.0 / n, dtype=F64)


CASES = {
    # estimator: shapes
    "u of rank 1": (lambda: _mi(u=torch.randn(6, dtype=F64)), ValueError, "u must have at least 2 dims"),
    "u and v shapes differ": (lambda: _mi(v=torch.randn(6, 4, dtype=F64)), ValueError, "share the feature dim"),
    "u and v N differ": (lambda: _mi(v=torch.randn(5, 3, dtype=F64)), ValueError, "same shape"),
    "u and v batch dims differ": (
        lambda: _mi(u=torch.randn(2, 6, 3, dtype=F64), v=torch.randn(3, 6, 3, dtype=F64)),
        ValueError,
        "leading",
    ),
    "N < 2": (lambda: _mi(*_uv(1), bias=torch.tensor([0])), ValueError, "N >= 2"),
    "empty feature dim": (lambda: _mi(*_uv(6, 0)), ValueError, "u must not be empty"),
    "bias N mismatched": (lambda: _mi(bias=torch.tensor([0, 1, 0])), ValueError, "bias must have shape"),
    "bias with wrong leading dims": (
        lambda: _mi(
            u=torch.randn(2, 6, 3, dtype=F64),
            v=torch.randn(2, 6, 3, dtype=F64),
            bias=torch.zeros(3, 6, dtype=torch.long),
        ),
        ValueError,
        "bias must have shape",
    ),
    "bias of floats": (lambda: _mi(bias=torch.zeros(6)), TypeError, "bias must hold integer"),
    "bias not a tensor": (lambda: _mi(bias=[0, 0, 1, 1, 2, 2]), TypeError, "bias must be an integer torch.Tensor"),
    "both bias and mask": (
        lambda: _mi(bias=torch.zeros(6, dtype=torch.long), mask=torch.eye(6, dtype=torch.bool)),
        ValueError,
        "exactly one of bias",
    ),
    "neither bias nor mask": (lambda: _mi(bias=None), ValueError, "exactly one of bias"),
    "mask not boolean": (lambda: _mi(mask=torch.eye(6)), TypeError, "mask must have dtype torch.bool"),
    "mask wrong shape": (lambda: _mi(mask=torch.eye(5, dtype=torch.bool)), ValueError, "mask must have shape"),
    "tolerance with mask": (lambda: _mi(mask=torch.eye(6, dtype=torch.bool), tolerance=1), ValueError, "tolerance"),
    "negative tolerance": (lambda: _mi(tolerance=-1), ValueError, "tolerance must be an int in"),
    "tolerance beyond int64": (lambda: _mi(tolerance=2**70), ValueError, "tolerance must be an int in"),
    "bias labels whose difference overflows int64": (
        lambda: _mi(bias=torch.tensor([2**62, -(2**62), 0, 0, 1, 1])),
        ValueError,
        "bias labels must lie in",
    ),
    "cross_sample_mi bias overflowing int64": (
        lambda: ck.cross_sample_mi(torch.zeros(3, 3), torch.tensor([2**62, -(2**62), 0])),
        ValueError,
        "bias labels must lie in",
    ),
    "float tolerance": (lambda: _mi(tolerance=0.5), TypeError, "tolerance must be a non-negative int"),
    # estimator: dtypes and devices
    "integer u": (lambda: _mi(u=torch.ones(6, 3, dtype=torch.long)), TypeError, "u must have a floating dtype"),
    "u and v dtypes differ": (lambda: _mi(v=torch.randn(6, 3)), TypeError, "u and v must have the same dtype"),
    "u not a tensor": (lambda: _mi(u=[[1.0] * 3] * 6), TypeError, "u must be a torch.Tensor"),
    "u and v on different devices": (
        lambda: _mi(v=torch.empty(6, 3, dtype=F64, device="meta")),
        ValueError,
        "one device",
    ),
    "bias on another device": (
        lambda: _mi(bias=torch.zeros(6, dtype=torch.long, device="meta")),
        ValueError,
        "bias must be on",
    ),
    # estimator: values and options
    "NaN in u": (lambda: _mi(u=torch.full((6, 3), float("nan"), dtype=F64)), ValueError, "u must be finite"),
    "inf in v": (lambda: _mi(v=torch.full((6, 3), float("inf"), dtype=F64)), ValueError, "v must be finite"),
    "c = 0": (lambda: _mi(c=0.0), ValueError, "c must lie strictly between 0 and 1"),
    "c = 1": (lambda: _mi(c=1.0), ValueError, "c must lie strictly between 0 and 1"),
    "c not a number": (lambda: _mi(c="0.5"), TypeError, "c must be a float"),
    "alpha not 0-d": (lambda: _mi(alpha=torch.ones(2, dtype=F64)), ValueError, "alpha must be a 0-d tensor"),
    "integer tau": (lambda: _mi(tau_y=torch.tensor(10)), TypeError, "tau_y must have a floating dtype"),
    "NaN tau": (lambda: _mi(tau_b=float("nan")), ValueError, "tau_b must be finite"),
    "NaN alpha tensor": (lambda: _mi(alpha=torch.tensor(float("nan"))), ValueError, "alpha must be finite"),
    "unknown similarity": (lambda: _mi(similarity="cosine"), ValueError, "similarity must be one of"),
    "unknown estimator": (lambda: _mi(estimator="mine"), ValueError, "estimator must be one of"),
    "unknown reduction": (lambda: _mi(reduction="max"), ValueError, "reduction must be one of"),
    "unknown backend": (lambda: _mi(backend="gpu"), ValueError, "backend must be 'auto' or one of"),
    # single ops
    "cosine feature dims differ": (
        lambda: ck.cosine_similarity(torch.randn(3, 2), torch.randn(3, 4)),
        ValueError,
        "share the feature dim d",
    ),
    "cosine NaN": (
        lambda: ck.cosine_similarity(torch.full((3, 2), float("nan")), torch.randn(3, 2)),
        ValueError,
        "x must be finite",
    ),
    "softmax_adjacency not square": (
        lambda: ck.softmax_adjacency(torch.randn(3, 4), 1.0),
        ValueError,
        "s must be square",
    ),
    "softmax_adjacency tau tensor of rank 1": (
        lambda: ck.softmax_adjacency(torch.randn(3, 3), torch.ones(1)),
        ValueError,
        "tau must be a 0-d tensor",
    ),
    "rwr negative entries": (
        lambda: ck.rwr(_stochastic() - 0.5 * torch.eye(4, dtype=F64) + 0.5 / 3 * (1 - torch.eye(4, dtype=F64))),
        ValueError,
        "negative entries",
    ),
    "rwr rows not summing to 1": (lambda: ck.rwr(1.01 * _stochastic()), ValueError, "rows must sum to 1"),
    "rwr c outside (0, 1)": (lambda: ck.rwr(_stochastic(), c=1.5), ValueError, "c must lie strictly"),
    "rwr NaN": (lambda: ck.rwr(torch.full((4, 4), float("nan"))), ValueError, "e must be finite"),
    "rwr not square": (lambda: ck.rwr(torch.full((4, 2), 0.5)), ValueError, "e must be square"),
    "symmetric_cross_entropy negative": (
        lambda: ck.symmetric_cross_entropy(_stochastic() - 0.3, _stochastic()),
        ValueError,
        "p must hold probabilities",
    ),
    "cross_sample_mi N < 2": (lambda: ck.cross_sample_mi(torch.zeros(1, 1), torch.tensor([0])), ValueError, "N >= 2"),
    "cross_sample_mi inf scores": (
        lambda: ck.cross_sample_mi(torch.full((3, 3), float("inf")), torch.tensor([0, 1, 0])),
        ValueError,
        "m must be finite",
    ),
    "cross_sample_mi not square": (
        lambda: ck.cross_sample_mi(torch.zeros(3, 4), torch.tensor([0, 1, 0])),
        ValueError,
        "m must be square",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_raises_a_clear_error(case):
    call, error, message = CASES[case]
    with pytest.raises(error, match=message):
        call()


def test_tolerance_rule_accepts_multi_labels_of_any_integer_dtype():
    u, v = _uv()
    bias = torch.tensor([[0, 1], [1, 1], [5, 5], [5, 6], [0, 0], [9, 9]], dtype=torch.uint8)
    out = ck.cs_mutual_information(u, v, bias, tolerance=1, alpha=1.0, tau_y=10.0, tau_b=10.0)
    assert torch.isfinite(out)


def test_huge_finite_inputs_whose_sum_overflows_are_accepted():
    x = torch.full((4, 3), 3e38)  # finite float32 entries; their sum is inf
    assert torch.isfinite(ck.cosine_similarity(x, x)).all()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_labels_at_the_int64_limit_compare_exactly(backend):
    # ±(2**62 - 1) differ by 2**63 - 2, which still fits: never treated as equal
    big = 2**62 - 1
    bias = torch.tensor([big, -big, big, -big, 0, 0])
    mask = torch.tensor(bias.tolist()).unsqueeze(0) == torch.tensor(bias.tolist()).unsqueeze(1)
    m = torch.randn(6, 6, dtype=F64)
    by_labels = ck.cross_sample_mi(m, bias, backend=backend)
    assert torch.allclose(by_labels, ck.cross_sample_mi(m, mask=mask, backend="reference"))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(c=1.5), "c must lie strictly between 0 and 1"),
        (dict(tolerance=-1), "tolerance must be an int in"),
        (dict(backend="bogus"), "backend must be one of"),
        (dict(estimator="mine"), "estimator must be one of"),
    ],
)
def test_cross_sample_mi_module_validates_its_options_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ck.CrossSampleMI((4, 4), **kwargs)


REFERENCE_VALUE_CHECKS = {
    "cs_mutual_information NaN u": (
        lambda u: ck.cs_mutual_information(
            u, u, torch.tensor([0, 1, 0, 1]), alpha=1.0, tau_y=10.0, tau_b=10.0, backend="reference"
        ),
        "u must be finite",
    ),
    "cross_sample_mi NaN m": (
        lambda u: ck.cross_sample_mi(u @ u.mT, torch.tensor([0, 1, 0, 1]), backend="reference"),
        "m must be finite",
    ),
    "cosine_similarity NaN x": (lambda u: ck.cosine_similarity(u, u, backend="reference"), "x must be finite"),
}


@pytest.mark.parametrize("case", list(REFERENCE_VALUE_CHECKS))
def test_reference_value_checks_hold_under_compile(case):
    # DESIGN §8: the reference always checks values, also inside torch.compile(fullgraph=True)
    fn, message = REFERENCE_VALUE_CHECKS[case]
    compiled = torch.compile(fn, fullgraph=True)
    u = torch.randn(4, 3)
    assert torch.isfinite(compiled(u)).all()
    u[1, 2] = float("nan")
    with pytest.raises(RuntimeError, match=message):
        compiled(u)
