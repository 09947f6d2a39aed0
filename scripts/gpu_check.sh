#!/usr/bin/env bash
# One command for a short GPU slot (about 9 minutes) on the machine the workplace lends: one H100/H200-class
# GPU (sm_90), Python 3.12, torch 2.11 + CUDA 13, Triton 3.6, no internet.
#
#   bash scripts/gpu_check.sh [RESULTS_DIR]      # default: $OUT, else ./gpu-check-results
#
# Stages, each under its own time limit (`timeout`; seconds, override with GPU_CHECK_LIMIT_<STAGE>):
#   env     (15)   versions, nvidia-smi                                              -> env.log
#   build   (240)  TORCH_CUDA_ARCH_LIST=9.0 pip install --no-build-isolation --no-deps -e .   -> build.log
#   warm    (240)  in parallel with build: compiles every Triton kernel configuration of the benchmark grid
#                  into Triton's cache (TRITON_CACHE_DIR) and records their sm_90 resources (benchmarks.resources)
#   tests   (120)  the GPU tests: the cuda and triton cases of tests/test_op_*.py, the backend files -> tests.log, junit
#   parity  (45)   every backend and Triton dot precision against float64 (benchmarks.parity) -> parity.json
#   bench   (110)  DESIGN.md §9's subset: the fused estimator, forward + backward, d = 32 (benchmarks.report)
# A stage that fails or runs out of time is recorded and the next stage still runs. stages.tsv (name, status,
# exit code, seconds) and summary.md say what happened; the exit code is 0 only when every stage passed.
#
# GPU_CHECK_DRY_RUN=1 runs the same stage logic with stub commands (no GPU, no build): each stage runs
# GPU_CHECK_STUB_<STAGE> (a bash command; default: print the real command), so the tests can exercise the
# limits, the failure handling and the results layout on a CPU.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${OUT:-$root/gpu-check-results}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root" || exit 2
python_bin="${PYTHON:-python}"
dry_run="${GPU_CHECK_DRY_RUN:-0}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$out/triton-cache}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
export TRITON_DEFAULT_FP_FUSION="${TRITON_DEFAULT_FP_FUSION:-1}"
unset TRITON_INTERPRET
printf 'stage\tstatus\texit\tseconds\n' >"$out/stages.tsv"

limit() {  # limit STAGE DEFAULT: the stage's time limit in seconds
  local var="GPU_CHECK_LIMIT_${1^^}"
  echo "${!var:-$2}"
}

stage() {  # stage NAME LIMIT CMD...: runs CMD under `timeout LIMIT`, output to NAME.log, a row in stages.tsv
  local name="$1" seconds="$2"
  shift 2
  local log="$out/$name.log" start rc status
  start=$(date +%s)
  if [ "$dry_run" = 1 ]; then
    local stub="GPU_CHECK_STUB_${name^^}"
    timeout --kill-after=5 "$seconds" bash -c "${!stub:-echo dry run: $*}" >"$log" 2>&1
  else
    timeout --kill-after=10 "$seconds" "$@" >"$log" 2>&1
  fi
  rc=$?
  case "$rc" in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(($(date +%s) - start))" >>"$out/stages.tsv"
  echo "gpu_check: $name: $status (exit $rc, $(($(date +%s) - start)) s of $seconds) -> $log"
  return "$rc"
}

env_info() {
  "$python_bin" -c 'import sys, torch, triton; print(sys.version); print("torch", torch.__version__, "cuda",
torch.version.cuda, "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None);
print("triton", triton.__version__)'
  nvidia-smi
}
export -f env_info
export python_bin

stage env "$(limit env 15)" bash -c env_info
# Triton's cache is warmed while the extension builds (the Triton backend needs no build).
stage warm "$(limit warm 240)" "$python_bin" -m benchmarks.resources --jobs 8 --no-cache --out "$out/resources" &
warm_pid=$!
stage build "$(limit build 240)" "$python_bin" -m pip install --no-build-isolation --no-deps -e .
wait "$warm_pid"
stage tests "$(limit tests 120)" "$python_bin" -m pytest -q -x --junitxml="$out/tests.xml" \
  -k "cuda or triton" tests/test_op_*.py tests/test_cuda_backend.py tests/test_triton_kernels.py
stage parity "$(limit parity 45)" "$python_bin" -m benchmarks.parity --out "$out"
stage bench "$(limit bench 110)" "$python_bin" -m benchmarks.report --ops cs_mutual_information --modes fwdbwd \
  --dims 32 --no-e2e --out "$out/bench"

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ) at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| stage | status | exit | seconds |"
  echo "|---|---|---:|---:|"
  tail -n +2 "$out/stages.tsv" | while IFS=$'\t' read -r name status rc seconds; do
    echo "| $name | $status | $rc | $seconds |"
  done
} >"$out/summary.md"
cat "$out/summary.md"
! grep -qv -P '\tok\t' <(tail -n +2 "$out/stages.tsv")
