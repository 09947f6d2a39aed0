"""The CUDA backend's Fp32GemmGuard (csrc/cuda/fp32_gemm_guard.h), compiled and run on a CPU build of torch.

The guard only touches torch's global float32-precision setting, which exists without a GPU: compiled here as a
small extension, constructed and destroyed once per session setting, in a fresh process each (the setting is
process-global, and torch refuses some legacy reads once the new interface has been used). It must make the
(CUDA, MATMUL) precision ``ieee`` while alive, whatever interface set TF32, and leave every reading of the
setting (new getter, legacy getters, or their refusal) as it found it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = r"""
#include <torch/extension.h>
#include "fp32_gemm_guard.h"

std::string precision_inside_guard() {
  csad::gpu::Fp32GemmGuard guard;
  return at::precision2str(at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("precision_inside_guard", &precision_inside_guard); }
"""
PROBE = """
import json, torch
from torch.utils.cpp_extension import load
probe = load("csad_fp32_gemm_guard_probe", [%(src)r], extra_include_paths=[%(include)r], build_directory=%(build)r)

def state():
    def read(f):
        try:
            return f()
        except RuntimeError:
            return "raises"
    return [torch._C._get_fp32_precision_getter("cuda", "matmul"), read(torch._C._get_cublas_allow_tf32),
            read(torch.get_float32_matmul_precision)]

m = torch.backends.cuda.matmul
%(setup)s
before = state()
inside = probe.precision_inside_guard()
print(json.dumps({"before": before, "inside": inside, "after": state()}))
"""
SETUPS = {
    "default": "pass",
    "new api tf32": 'm.fp32_precision = "tf32"',
    "new api ieee": 'm.fp32_precision = "ieee"',
    "generic new api tf32": 'torch.backends.fp32_precision = "tf32"',
    "legacy allow_tf32": "m.allow_tf32 = True",
    "legacy high": 'torch.set_float32_matmul_precision("high")',
    "legacy medium": 'torch.set_float32_matmul_precision("medium")',
}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("torch.utils.cpp_extension")
    folder = tmp_path_factory.mktemp("fp32_gemm_guard")
    src = folder / "probe.cpp"
    src.write_text(SOURCE)
    return {"src": str(src), "include": str(ROOT / "csrc" / "cuda"), "build": str(folder)}


def _probe(build: dict[str, str], setup: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_ALLOW_TF32")}
    done = subprocess.run([sys.executable, "-c", PROBE % (build | {"setup": setup})], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setup", list(SETUPS))
def test_guard_forces_ieee_gemms_and_restores_the_setting(build, setup):
    got = _probe(build, SETUPS[setup])
    assert got["inside"] == "ieee", got
    assert got["after"] == got["before"], got
    if setup in ("new api tf32", "generic new api tf32", "legacy allow_tf32", "legacy high", "legacy medium"):
        assert got["before"][0] == "tf32", got  # the session really had TF32 on: the guard had work to do
