#pragma once
// Full float32 cuBLAS GEMMs while alive, whatever the session's TF32 setting, through either of torch's
// interfaces: the per-backend one (torch.backends.cuda.matmul.fp32_precision = "tf32", or the generic
// torch.backends.fp32_precision) or the legacy one (torch.backends.cuda.matmul.allow_tf32,
// torch.set_float32_matmul_precision("high" / "medium")). TF32 would drop the backend to ~1e-3 relative error.
//
// It reads and writes only the per-backend setting of (CUDA, MATMUL), which is what torch's cuBLAS calls
// consult and which both interfaces keep in step. The legacy getters (allowTF32CuBLAS,
// float32MatmulPrecision) must not be used here: in torch >= 2.9 they throw once the new interface has set
// TF32 ("mix of the legacy and new APIs"). The caller's value is restored on exit. The setting is
// process-global: a GEMM that another thread runs meanwhile also sees full precision.
//
// Header-only and free of CUDA headers, so that tests/test_fp32_gemm_guard.py compiles and runs it on a CPU
// build of torch.
#include <ATen/Context.h>

namespace csad::gpu {

class Fp32GemmGuard {
 public:
  Fp32GemmGuard() : previous_(context().float32Precision(kBackend, kOp)) {
    if (previous_ != at::Float32Precision::IEEE) {
      context().setFloat32Precision(kBackend, kOp, at::Float32Precision::IEEE);
    }
  }
  ~Fp32GemmGuard() {
    if (previous_ != at::Float32Precision::IEEE) {
      context().setFloat32Precision(kBackend, kOp, previous_);
    }
  }
  Fp32GemmGuard(const Fp32GemmGuard&) = delete;
  Fp32GemmGuard& operator=(const Fp32GemmGuard&) = delete;

 private:
  static constexpr at::Float32Backend kBackend = at::Float32Backend::CUDA;
  static constexpr at::Float32Op kOp = at::Float32Op::MATMUL;
  static at::Context& context() { return at::globalContext(); }
  at::Float32Precision previous_;
};

}  // namespace csad::gpu
