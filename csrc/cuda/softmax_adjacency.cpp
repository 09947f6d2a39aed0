// Row softmax adjacency E = softmax_rows(tau * s) on CUDA: one block per row, in place on a copy.
// Mirrors csrc/cpu/softmax_adjacency.cpp; tau stays on the device (no host synchronisation).
//
// STATUS: syntax-checked against torch 2.13's headers, but NOT yet compiled into the extension (that
// needs a CUDA build of torch) nor run on a GPU; tests/test_cuda_ops.py is the check to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "cuda_common.h"

namespace csad::gpu {

at::Tensor softmax_adjacency_forward(const at::Tensor& s, const at::Tensor& tau) {
  check_cuda(s, "s");
  const c10::cuda::OptionalCUDAGuard guard(s.device());
  auto e = as_batched(s).clone();
  softmax_rows_(e, tau);
  return e.reshape(s.sizes()).to(s.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> softmax_adjacency_backward(const at::Tensor& grad, const at::Tensor& e,
                                                              const at::Tensor& s, const at::Tensor& tau) {
  check_cuda(grad, "grad");
  check_cuda(e, "e");
  check_cuda(s, "s");
  const c10::cuda::OptionalCUDAGuard guard(s.device());
  auto grad_s = as_batched(grad).clone();
  const auto grad_tau = softmax_backward_(grad_s, as_batched(e), as_batched(s), tau);
  return {grad_s.reshape(s.sizes()).to(s.scalar_type()), grad_tau.to(tau.device(), tau.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("softmax_adjacency", &softmax_adjacency_forward);
  m.impl("softmax_adjacency_backward", &softmax_adjacency_backward);
}

}  // namespace csad::gpu
