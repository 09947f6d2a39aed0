// Random Walk with Restart on CUDA: inverse of (I - cE) by at::linalg_inv_ex without its error check
// (cuSOLVER, no host sync), rows renormalised in place by a kernel; the backward's two GEMMs by cuBLAS. Mirrors csrc/cpu/rwr.cpp.
//
// STATUS: syntax-checked against torch 2.13's headers, but NOT yet compiled into the extension (that
// needs a CUDA build of torch) nor run on a GPU; tests/test_cuda_ops.py is the check to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "cuda_common.h"

namespace csad::gpu {

std::tuple<at::Tensor, at::Tensor> rwr_op(const at::Tensor& e, double c) {
  check_cuda(e, "e");
  const c10::cuda::OptionalCUDAGuard guard(e.device());
  const Fp32GemmGuard fp32_gemms;
  auto [r, w_row_sums] = rwr_forward(as_batched(e), c);
  auto batch = e.sizes().vec();
  batch.pop_back();
  return {r.reshape(e.sizes()).to(e.scalar_type()), w_row_sums.reshape(batch)};
}

at::Tensor rwr_backward_op(const at::Tensor& grad, const at::Tensor& r, const at::Tensor& w_row_sums, double c) {
  check_cuda(grad, "grad");
  check_cuda(r, "r");
  check_cuda(w_row_sums, "w_row_sums");
  const c10::cuda::OptionalCUDAGuard guard(r.device());
  const Fp32GemmGuard fp32_gemms;
  const auto rb = as_batched(r);
  const auto sums = w_row_sums.to(rb.scalar_type()).contiguous().reshape({rb.size(0), rb.size(1)});
  return rwr_backward(as_batched(grad).clone(), rb, sums, c).reshape(r.sizes()).to(r.scalar_type());
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("rwr", &rwr_op);
  m.impl("rwr_backward", &rwr_backward_op);
}

}  // namespace csad::gpu
