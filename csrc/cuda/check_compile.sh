#!/usr/bin/env bash
# Compile check of the CUDA backend sources, for machines without a GPU or a CUDA build of torch.
#
# 1. Every csrc/cuda/*.cu (plain CUDA, no torch headers) is compiled with
#    `nvcc -std=c++17 -O2 -arch=<arch> -c` for sm_80 and sm_90 (override: CSAD_CUDA_ARCHS="sm_80 sm_90"),
#    nvcc warnings counted as errors. Skipped, with a line saying so, when nvcc is absent.
# 2. Every csrc/cuda/*.cpp (the torch-facing launchers), and every composite over per-device primitives
#    in csrc/*.cpp (all but csad.cpp, the schemas) with its CUDA registration (-DWITH_CUDA), is
#    syntax-checked with the host C++ compiler against the installed torch's headers (a CPU wheel ships the c10/cuda headers they use) and the
#    CUDA runtime headers. Skipped, with a line saying so, when torch, the CUDA headers or a C++
#    compiler is missing, or when CSAD_CHECK_CPP=0.
# Neither step links or runs anything: the backend's behaviour is tested by the cuda cases of tests/test_op_*.py and tests/test_cuda_backend.py
# on a GPU machine. Exits non-zero when any compilation fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# torch's headers, looked up before the cd so that a relative PYTHON path still works.
python_bin="${PYTHON:-python3}"
torch_include="$("$python_bin" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))' \
  2>/dev/null || true)"
cd "$here"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0

nvcc_bin="${NVCC:-$(command -v nvcc || true)}"
if [ -z "$nvcc_bin" ]; then
  echo "check_compile: SKIP .cu compile check: nvcc not found (set NVCC or put nvcc on PATH)"
else
  echo "check_compile: $("$nvcc_bin" --version | tail -n 1)"
  for arch in ${CSAD_CUDA_ARCHS:-sm_80 sm_90}; do
    for src in *.cu; do
      if "$nvcc_bin" -std=c++17 -O2 -arch="$arch" -Werror all-warnings -c "$src" -o "$tmp/${src%.cu}.$arch.o"; then
        echo "check_compile: ok   nvcc -arch=$arch $src"
      else
        echo "check_compile: FAIL nvcc -arch=$arch $src"
        status=1
      fi
    done
  done
fi

cuda_include=""
candidates=("${CUDA_HOME:-}" "${CUDA_PATH:-}")
if [ -n "$nvcc_bin" ]; then
  candidates+=("$(dirname "$(dirname "$nvcc_bin")")" "$(dirname "$(dirname "$(readlink -f "$nvcc_bin")")")")
fi
candidates+=(/usr/local/cuda)
for root in "${candidates[@]}"; do
  if [ -n "$root" ] && [ -f "$root/include/cuda_runtime_api.h" ]; then
    cuda_include="$root/include"
    break
  fi
done
cxx="${CXX:-$(command -v g++ || command -v c++ || true)}"

if [ "${CSAD_CHECK_CPP:-1}" = "0" ]; then
  echo "check_compile: SKIP .cpp syntax check: CSAD_CHECK_CPP=0"
elif [ -z "$cxx" ]; then
  echo "check_compile: SKIP .cpp syntax check: no C++ compiler found"
elif [ -z "$torch_include" ] || [ ! -f "$torch_include/c10/cuda/CUDAGuard.h" ]; then
  echo "check_compile: SKIP .cpp syntax check: torch (with its c10/cuda headers) not importable by $python_bin"
elif [ -z "$cuda_include" ]; then
  echo "check_compile: SKIP .cpp syntax check: CUDA runtime headers (cuda_runtime_api.h) not found; set CUDA_HOME"
else
  # C10_CUDA_NO_CMAKE_CONFIGURE_FILE: CPU wheels lack c10/cuda/impl/cuda_cmake_macros.h (export macros only).
  pids=()
  composites=()
  for src in ../*.cpp; do
    [ "$(basename "$src")" = csad.cpp ] || composites+=("$src")
  done
  for src in *.cpp "${composites[@]}"; do
    "$cxx" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -DWITH_CUDA -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE \
      -isystem "$torch_include" -isystem "$torch_include/torch/csrc/api/include" -isystem "$cuda_include" \
      "$src" >"$tmp/$(basename "${src%.cpp}").log" 2>&1 &
    pids+=("$!:$src")
  done
  for entry in "${pids[@]}"; do
    if wait "${entry%%:*}"; then
      echo "check_compile: ok   $(basename "$cxx") -fsyntax-only ${entry#*:}"
    else
      echo "check_compile: FAIL $(basename "$cxx") -fsyntax-only ${entry#*:}"
      cat "$tmp/$(basename "${entry#*:}" .cpp).log"
      status=1
    fi
  done
fi

if [ "$status" -ne 0 ]; then
  echo "check_compile: FAILED"
else
  echo "check_compile: passed"
fi
exit "$status"
