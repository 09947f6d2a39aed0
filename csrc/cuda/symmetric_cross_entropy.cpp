// Inverse symmetric cross-entropy on CUDA: two cuBLAS GEMMs forward, four backward, the clamped-log
// gradient division by a kernel. Mirrors csrc/cpu/symmetric_cross_entropy.cpp.
//
// STATUS: syntax-checked against torch 2.13's headers, but NOT yet compiled into the extension (that
// needs a CUDA build of torch) nor run on a GPU; tests/test_cuda_ops.py is the check to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cuda_common.h"

namespace csad::gpu {
at::Tensor symmetric_cross_entropy_forward(const at::Tensor& p, const at::Tensor& q) {
  check_cuda(p, "p");
  check_cuda(q, "q");
  const c10::cuda::OptionalCUDAGuard guard(p.device());
  const Fp32GemmGuard fp32_gemms;
  return sce_forward(as_batched(p), as_batched(q)).reshape(pair_shape(p, q)).to(p.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> symmetric_cross_entropy_backward(const at::Tensor& grad, const at::Tensor& p,
                                                                    const at::Tensor& q) {
  check_cuda(grad, "grad");
  check_cuda(p, "p");
  check_cuda(q, "q");
  const c10::cuda::OptionalCUDAGuard guard(p.device());
  const Fp32GemmGuard fp32_gemms;
  auto [grad_p, grad_q] = sce_backward(as_batched(grad), as_batched(p), as_batched(q));
  return {grad_p.reshape(p.sizes()).to(p.scalar_type()), grad_q.reshape(q.sizes()).to(q.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("symmetric_cross_entropy", &symmetric_cross_entropy_forward);
  m.impl("symmetric_cross_entropy_backward", &symmetric_cross_entropy_backward);
}

}  // namespace csad::gpu
