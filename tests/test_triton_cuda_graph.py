"""``CrossSampleMI(cuda_graph=True)`` checked without a GPU: the option's validation and CPU behaviour, its
capture-per-signature logic (with the capture replaced by an eager stand-in), and the capture safety of what the
graph would record: no host synchronisation and the same launches on every call (recorded on ``meta`` tensors).

Not testable here: the capture and replay themselves (``torch.cuda.make_graphed_callables`` needs a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers import labels

import csad_kernels as ck
from csad_kernels import module as module_file

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_graph_is_off_by_default_and_shown():
    module = ck.CrossSampleMI((6, 4))
    assert module.cuda_graph is False
    assert "cuda_graph=True" in repr(ck.CrossSampleMI((6, 4), cuda_graph=True))


@pytest.mark.parametrize("value", [1, "yes", None])
def test_cuda_graph_must_be_a_bool(value):
    with pytest.raises(TypeError, match="cuda_graph must be a bool"):
        ck.CrossSampleMI((6, 4), cuda_graph=value)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_cuda_graph_refuses_host_backends(backend):
    with pytest.raises(ValueError, match="cuda_graph=True needs a backend whose kernels a CUDA graph can capture"):
        ck.CrossSampleMI((6, 4), backend=backend, cuda_graph=True)


def test_cuda_graph_refuses_cpu_inputs():
    module = ck.CrossSampleMI((6, 4), cuda_graph=True)
    with pytest.raises(RuntimeError, match=r"needs CUDA inputs, got tensors on \['cpu'\]"):
        module(torch.randn(8, 6), torch.randn(8, 6), labels((), 8, classes=3))


@pytest.fixture
def eager_capture(monkeypatch):
    """``make_graphed_callables`` replaced by a stand-in that records its arguments and returns the callable."""
    captures = []

    def capture(fn, sample_args, allow_unused_input=False):
        captures.append({"args": sample_args, "allow_unused_input": allow_unused_input})
        return fn

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", capture)
    monkeypatch.setattr(module_file, "require_cuda", lambda tensors: None)
    return captures


def _inputs(n: int, requires_grad: bool = False):
    hy = torch.randn(n, 6, dtype=torch.float64, requires_grad=requires_grad)
    return hy, torch.randn(n, 6, dtype=torch.float64), labels((), n, classes=3)


def test_one_capture_per_input_signature(eager_capture):
    module = ck.CrossSampleMI((6, 4), cuda_graph=True).double()
    module(*_inputs(8))
    module(*_inputs(8))
    assert len(eager_capture) == 1
    module(*_inputs(10))  # a new shape
    module(*_inputs(10, requires_grad=True))  # an input now requires grad
    with torch.no_grad():
        module(*_inputs(10))  # grad mode
    assert len(eager_capture) == 4
    assert all(capture["allow_unused_input"] for capture in eager_capture)


def test_moving_the_module_drops_its_graphs(eager_capture):
    module = ck.CrossSampleMI((6, 4), cuda_graph=True).double()
    module(*_inputs(8))
    assert len(module._graphs) == 1
    module.float().double()  # new parameter storage: a replay would read the old one
    assert module._graphs == {}
    module(*_inputs(8))
    assert len(eager_capture) == 2


def test_capture_reads_static_copies_of_the_inputs_and_the_parameters_in_place(eager_capture):
    module = ck.CrossSampleMI((6, 4), cuda_graph=True).double()
    hy, hb, bias = _inputs(8, requires_grad=True)
    module(hy, hb, bias)
    args = eager_capture[0]["args"]
    params = tuple(module.parameters())
    assert len(args) == 3 + len(params)
    for given, static in zip((hy, hb, bias), args[:3], strict=True):
        assert static.data_ptr() != given.data_ptr() and torch.equal(static, given)
        assert static.requires_grad == given.requires_grad
    assert all(a is p for a, p in zip(args[3:], params, strict=True))


def test_graphed_forward_and_gradients_equal_the_eager_module(eager_capture):
    torch.manual_seed(0)
    eager = ck.CrossSampleMI((6, 8, 4), estimator="ms", alpha_neg=2.0).double()
    graphed = ck.CrossSampleMI((6, 8, 4), estimator="ms", alpha_neg=2.0, cuda_graph=True).double()
    graphed.load_state_dict(eager.state_dict())
    hy, hb, bias = _inputs(12, requires_grad=True)
    groups = torch.arange(12) % 2
    results = []
    for module in (eager, graphed):
        x = hy.detach().clone().requires_grad_()
        out = module(x, hb, bias, groups=groups)
        out.backward()
        results.append((out.detach(), x.grad, [p.grad for p in module.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0)
    for got, want in zip(results[1][2], results[0][2], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


CAPTURE_SAFETY = """
import json, torch
import csad_kernels.api as api
import csad_kernels.triton  # registers the Triton kernels
from csad_kernels._dispatch import _KERNELS
from benchmarks.launches import record
from csad_kernels import CrossSampleMI

# the Triton kernels on meta tensors, as the recording harness runs them (the dispatcher would refuse meta)
api.resolve = lambda op, requested, device: ("triton", _KERNELS["triton"][op])
out = {}
for n in (32, 128):
    for estimator in ("cs", "ms"):
        module = CrossSampleMI((16, 32), estimator=estimator, backend="triton").to("meta")

        def step():
            module.zero_grad(set_to_none=True)  # a graph's backward computes the gradients, it does not accumulate
            hy = torch.empty(n, 16, device="meta", requires_grad=True)
            hb = torch.empty(n, 16, device="meta", requires_grad=True)
            bias = torch.empty(n, dtype=torch.int64, device="meta")
            groups = torch.empty(n, dtype=torch.int64, device="meta") if estimator == "ms" else None
            module(hy, hb, bias, groups=groups).backward()

        first, second = record(step), record(step)
        out[f"{estimator} N={n}"] = {
            "syncs": first.syncs + second.syncs,
            "triton": [[l.name, list(l.grid)] for l in first.launches],
            "same": [(l.name, l.grid) for l in first.launches] == [(l.name, l.grid) for l in second.launches]
            and first.aten == second.aten,
        }
print(json.dumps(out))
"""


def test_module_forward_backward_is_capture_safe():
    """What a capture of the module would record (heads, validation, estimator, backward), on both Triton paths:
    no host synchronisation (not capturable) and the same kernels with the same grids on every call (a replay
    repeats the captured launches)."""
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", CAPTURE_SAFETY], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(got) == {"cs N=32", "ms N=32", "cs N=128", "ms N=128"}
    for case, result in got.items():
        assert result["syncs"] == [], case
        assert result["same"], case
        small = case.endswith("N=32")
        assert ("_csmi_small_kernel" in {name for name, _ in result["triton"]}) == small, case
