"""Builds the csad_kernels._C extension from csrc/.

CPU sources (csrc/*.cpp: the schemas and the ops, each written once over per-device primitives;
csrc/cpu/*.cpp) are always compiled. CUDA sources (csrc/cuda/*.cu, *.cpp) join, and the ops register
their CUDA kernels (WITH_CUDA), when torch was built with CUDA and nvcc is found. Environment overrides:
FORCE_CUDA=1 builds the CUDA sources regardless (fails clearly if torch has no CUDA),
FORCE_ONLY_CPU=1 skips them; TORCH_CUDA_ARCH_LIST is honoured by torch's build tools.
"""

from __future__ import annotations

import glob
import os
import shutil

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in {"1", "true", "yes", "on"}


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _nvcc_found() -> bool:
    return CUDA_HOME is not None or shutil.which("nvcc") is not None


def _build_cuda(cuda_sources: list[str]) -> bool:
    if _flag("FORCE_ONLY_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        if torch.version.cuda is None:
            raise RuntimeError(
                "FORCE_CUDA=1 but the installed torch has no CUDA support "
                f"(torch {torch.__version__}); install a CUDA build of torch or unset FORCE_CUDA."
            )
        return True
    return bool(cuda_sources) and torch.version.cuda is not None and _nvcc_found()


def extensions() -> list:
    cpu_sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cuda_sources = _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
    cxx_flags = ["-O3"]  # the C++ standard is the one torch's build tools choose for its headers
    if "ATen parallel backend: OpenMP" in torch.__config__.parallel_info():
        # at::parallel_for is a header template: without -fopenmp its OpenMP pragma is dropped and
        # every "parallel" loop runs on one thread. Not linked: the GOMP symbols resolve to the
        # OpenMP runtime torch has already loaded, so no second runtime enters the process.
        cxx_flags += ["-fopenmp", "-DAT_PARALLEL_OPENMP"]
    if _build_cuda(cuda_sources):
        return [
            CUDAExtension(
                "csad_kernels._C",
                cpu_sources + cuda_sources,
                define_macros=[("WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            )
        ]
    return [
        CppExtension(
            "csad_kernels._C",
            cpu_sources,
            extra_compile_args={"cxx": cxx_flags},
        )
    ]


def requirements() -> list[str]:
    # The compiled extension only loads into the torch it was built against: pin that version
    # (local labels such as +cpu or +cu126 are left out, so either build satisfies it).
    return [f"torch=={torch.__version__.split('+')[0]}", "numpy"]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtension}, install_requires=requirements())
