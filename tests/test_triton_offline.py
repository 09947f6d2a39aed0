"""The Triton backend checked without a GPU: what the launchers launch (recorded on ``meta`` tensors, no kernel
run), the Triton IR and the sm_90 binaries of the kernels (compiled ahead of time), and the dot-precision setting.

The recording and compiling run in a subprocess without ``TRITON_INTERPRET`` (the interpreter, which the
other Triton tests use on a CPU machine, replaces the kernels that the compiler needs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

from csad_kernels.triton import _common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600, check=False
    )


def _json(code: str, **env: str):
    done = _run(code, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- dot precision


def test_precision_default_env_setter_and_context(monkeypatch):
    monkeypatch.delenv(_common.PRECISION_ENV, raising=False)
    assert _common.dot_precision() == "tf32x3"
    monkeypatch.setenv(_common.PRECISION_ENV, "ieee")
    assert _common.dot_precision() == "ieee"
    with _common.precision("tf32"):
        assert _common.dot_precision() == "tf32"
    assert _common.dot_precision() == "ieee"
    _common.set_precision("tf32x3")
    try:
        assert _common.dot_precision() == "tf32x3"
    finally:
        _common.set_precision(None)
    assert _common.dot_precision() == "ieee"


def test_precision_rejects_unknown_modes(monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of"):
        _common.set_precision("fp16")
    monkeypatch.setenv(_common.PRECISION_ENV, "bf16")
    with pytest.raises(ValueError, match=_common.PRECISION_ENV):
        _common.dot_precision()


LAUNCHES = """
import functools, json, sys
from benchmarks.launches import record
from benchmarks.resources import WORKLOADS
out = {}
for n in %(sizes)s:
    rec = record(functools.partial(WORKLOADS[%(workload)r], n, 32, 1))
    out[n] = {"triton": [l.name for l in rec.launches], "aten": rec.aten, "syncs": rec.syncs,
              "precision": sorted({str(l.kwargs["PRECISION"]) for l in rec.launches if "PRECISION" in l.kwargs}),
              "fp_fusion": sorted({str(l.kwargs.get("enable_fp_fusion")) for l in rec.launches})}
print(json.dumps(out))
"""


def test_every_dot_follows_the_precision_setting():
    for mode in _common.PRECISIONS:
        got = _json(LAUNCHES % {"sizes": (32, 128), "workload": "cs_mutual_information[joint]"},
                    CSAD_TRITON_PRECISION=mode)  # fmt: skip
        assert {p for case in got.values() for p in case["precision"]} == {mode}


@pytest.mark.parametrize("workload", ["cs_mutual_information[joint]", "cs_mutual_information[ms-groups]",
                                      "cosine_similarity", "symmetric_cross_entropy", "rwr", "softmax_adjacency",
                                      "cross_sample_mi"])
def test_every_launch_pins_fp_fusion(workload):
    """Triton 3.9 warns that its fp-fusion default flips in 3.10: every launch, small path (N = 32) and tiled
    (N = 128), must pass ``enable_fp_fusion`` itself (launch_settings.COMPILE_OPTIONS)."""
    got = _json(LAUNCHES % {"sizes": (32, 128), "workload": workload})
    assert {f for case in got.values() for f in case["fp_fusion"]} == {"True"}, got


# ---- launches of one fused forward + backward


# (Triton, ATen) kernels of one forward + backward on the tiled path, measured at N = 128, 256 and 1024 (the same
# at every N): ceilings, so that a regression fails; the target is at most 40 in all. Before the loss's
# statistics moved into a Triton kernel and the RWR's product form into k launches: (23, 72), (23, 131), (5, 59).
LAUNCH_CEILINGS = {
    "cs_mutual_information[joint]": (21, 11),
    "cs_mutual_information[ms-groups]": (21, 13),
    "cs_mutual_information[content]": (6, 5),
}
LAUNCH_TARGET = 40


@pytest.mark.parametrize("workload", list(LAUNCH_CEILINGS))
def test_fused_forward_backward_launch_count_and_no_host_sync(workload):
    """The tiled path (N > 64 on a GPU): every Triton and ATen kernel of one forward + backward, counted.

    joint: 21 Triton + 11 ATen kernels at every N (before: 23 + 72, of which 53 ATen kernels were the loss
    launcher's float64 per-problem statistics, now one Triton kernel). Also asserted: no host synchronisation.
    """
    triton_ceiling, aten_ceiling = LAUNCH_CEILINGS[workload]
    got = _json(LAUNCHES % {"sizes": (128, 256, 1024), "workload": workload})
    assert set(got) == {"128", "256", "1024"}
    for n, case in got.items():
        assert case["syncs"] == [], n
        assert "_csmi_small_kernel" not in case["triton"], n
        assert len(case["triton"]) <= triton_ceiling, (n, case["triton"])
        assert len(case["aten"]) <= aten_ceiling, (n, case["aten"])
        assert len(case["triton"]) + len(case["aten"]) <= LAUNCH_TARGET, n
        # both graphs share one launch per stage: one graph kernel and one launch per product-form factor
        graphs = workload != "cs_mutual_information[content]"
        assert case["triton"].count("_gram_softmax_forward_kernel") == graphs, n
        assert case["triton"].count("_product_step_kernel") == graphs * _common.num_factors(0.5), n


def test_small_path_is_one_launch_each_way():
    got = _json(LAUNCHES % {"sizes": (32, 64), "workload": "cs_mutual_information[joint]"})
    for case in got.values():
        assert case["triton"] == ["_csmi_small_kernel", "_csmi_small_kernel"]
        assert case["syncs"] == []


ROUTES = """
import functools, json
from benchmarks.launches import record
from benchmarks.resources import WORKLOADS
out = {}
for workload in ("cs_mutual_information[joint]", "cs_mutual_information[content]"):
    for n, d in ((32, 128), (64, 32), (64, 128)):
        names = {l.name for l in record(functools.partial(WORKLOADS[workload], n, d, 1)).launches}
        out[f"{workload} N={n} d={d}"] = "_csmi_small_kernel" in names
print(json.dumps(out))
"""


def test_one_program_kernel_only_where_it_fits_one_block():
    """sm_90 gives a block at most 227 KB of shared memory; the one-program backward of the graph similarities
    at N = 64, d = 128 asked for 288 KB (benchmarks/README.md), so that size takes the tiled path."""
    got = _json(ROUTES)
    tiled = {"cs_mutual_information[joint] N=64 d=128"}
    assert got == {case: case not in tiled for case in got}, got


# ---- int64 batch offsets

INT64 = """
import functools, json, re
from benchmarks.launches import record
from benchmarks.resources import WORKLOADS, ttir
seen, bad, overflowing = set(), [], set()
for name, n, b in %(cases)s:
    for launch in record(functools.partial(WORKLOADS[name], n, 32, b)).launches:
        # a batch offset past int32: some integer argument (a batch stride) times the last program id
        ints = [a for a in launch.args if isinstance(a, int) and not isinstance(a, bool)]
        if any(a * (launch.grid[-1] - 1) >= 2**31 for a in ints):
            overflowing.add(launch.name)
        if launch.name in seen:
            continue
        seen.add(launch.name)
        text = ttir(launch).split("tt.func public", 1)[1].split("\\n  tt.func", 1)[0]  # the kernel, not its callees
        axis = "xyz"[len(launch.grid) - 1]
        pid = re.search(r"(%%[\\w.]+) = tt.get_program_id " + axis + r" : i32", text).group(1)
        uses = [line for line in text.splitlines() if re.search(re.escape(pid) + r"\\b", line)][1:]
        if not uses or not all(re.search(r"arith.extsi " + re.escape(pid) + r" : i32 to i64", u) for u in uses):
            bad.append([launch.name, uses])
print(json.dumps({"kernels": sorted(seen), "bad": bad, "overflowing": sorted(overflowing)}))
"""


def test_batch_offsets_are_64_bit_in_every_kernel():
    """``b * stride_b`` overflows int32 once B·N² >= 2³¹: the batch program id is widened to i64 before any use.

    Checked in the Triton IR of every kernel the workloads launch (a shape that large cannot run here).
    """
    got = _json(INT64 % {"cases": "[(w, n, 1) for w in WORKLOADS for n in (32, 128)]"})
    assert len(got["kernels"]) >= 12
    assert got["bad"] == []


def test_batch_offsets_past_int32_on_the_meta_device():
    """B·N² > 2³¹ (B = 129, N = 4096) recorded on the meta device: the launchers take the shape, the last
    program's batch offset alone, (B - 1)·N², reaches 2³¹ in the N×N kernels, and those very launches widen the
    batch id to i64."""
    cases = [(w, 4096, 129) for w in ("cs_mutual_information[joint]", "rwr", "softmax_adjacency")]
    got = _json(INT64 % {"cases": cases})
    assert {"_gemm_kernel", "_csmi_forward_kernel", "_softmax_forward_kernel"} <= set(got["overflowing"]), got
    assert set(got["overflowing"]) <= set(got["kernels"])
    assert got["bad"] == []


# ---- the resource report


def test_resource_report_schema_and_tensor_cores(tmp_path):
    """A tiny subset of ``python -m benchmarks.resources``: the JSON schema, and MMA only when the dots allow it."""
    from benchmarks.resources import SCHEMA_KEYS

    args = ["--sizes", "64", "--dims", "32", "--batches", "1", "--workloads", "cosine_similarity", "--no-cache"]
    mma = {}
    for mode in ("tf32x3", "ieee"):
        out = tmp_path / mode
        code = f"from benchmarks.resources import main; main({[*args, '--out', str(out)]!r})"
        done = _run(code, CSAD_TRITON_PRECISION=mode)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads((out / "triton-sm90-resources.json").read_text())
        assert result["meta"]["precision"] == mode and result["meta"]["sizes"] == [64]
        assert [r["kernel"] for r in result["kernels"]] == ["_cosine_forward_kernel", "_cosine_backward_kernel"]
        for row in result["kernels"]:
            assert tuple(row) == SCHEMA_KEYS
            # ieee: FMA dots spilled in the backward (992 B) until the launchers halved the tiles for them
            assert row["registers"] > 0 and row["num_warps"] > 0 and row["spill_bytes"] == 0
            assert set(row["instructions"]) >= {"ffma", "hmma", "hgmma", "ldl", "stl", "total"}
            assert row["used_by"] == ["cosine_similarity N=64 d=32 B=1"]
        mma[mode] = [r["instructions"]["hmma"] + r["instructions"]["hgmma"] for r in result["kernels"]]
        assert re.search(r"\| `_cosine_forward_kernel` \| N=\d+ M=\d+ D=32 \|", done.stdout)
    assert all(m > 0 for m in mma["tf32x3"]) and mma["ieee"] == [0, 0]


def test_precision_emulation_rounds_to_tf32_and_tf32x3_recovers_float32():
    """benchmarks.precision's emulation: tf32 keeps 10 mantissa bits; tf32x3 ~ float32, tf32 ~ 2^-11 per input."""
    import torch

    from benchmarks.precision import dot, tf32

    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    r = tf32(x)
    assert torch.all((r.view(torch.int32) & 0x1FFF) == 0)
    assert float(((r - x).abs() / x.abs()).max()) <= 2.0**-11
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(64, 256, generator=g), torch.rand(256, 64, generator=g)
    want = a.double() @ b.double()
    err = {m: float(((dot(a, b, m).double() - want).abs() / want).max()) for m in _common.PRECISIONS}
    assert err["tf32x3"] <= 1e-6 and err["ieee"] <= 1e-6
    assert 1e-5 <= err["tf32"] <= 2.0**-10


def test_precision_emulation_of_the_gradient_goes_through_the_emulated_dots():
    """benchmarks.precision's backward: the product-form inverse's gradient in tf32x3 ~ float32, in tf32 visibly
    worse (a gradient that bypassed the emulated dots, e.g. cut by the tf32 rounding's bit view, fails both)."""
    import torch

    from benchmarks.precision import product_form_inverse

    g = torch.Generator().manual_seed(2)
    e = torch.softmax(10 * torch.randn(96, 96, generator=g, dtype=torch.float64), dim=-1)
    weights = torch.randn(96, 96, generator=g, dtype=torch.float64)
    m = (torch.eye(96, dtype=torch.float64) - 0.5 * e).requires_grad_()
    (want,) = torch.autograd.grad((torch.linalg.inv(m) * weights).sum(), m)
    err = {}
    for mode in _common.PRECISIONS:
        m32 = m.detach().float().requires_grad_()
        (got,) = torch.autograd.grad((product_form_inverse(m32, 0.5, mode) * weights.float()).sum(), m32)
        err[mode] = float((got.double() - want).abs().max() / want.abs().max())
    assert err["tf32x3"] <= 1e-5 and err["ieee"] <= 1e-5, err
    assert 1e-5 <= err["tf32"] <= 1e-2, err
