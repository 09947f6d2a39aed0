// Row softmax adjacency E = softmax_rows(tau * s) on the CPU (ATen's vectorised softmax), with the
// centred tau gradient.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"

namespace csad::cpu {

at::Tensor softmax_adjacency_forward(const at::Tensor& s, const at::Tensor& tau) {
  return softmax_rows(as_batched(s), tau.item<double>()).reshape(s.sizes()).to(s.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> softmax_adjacency_backward(const at::Tensor& grad, const at::Tensor& e,
                                                              const at::Tensor& s, const at::Tensor& tau) {
  auto [grad_s, grad_tau] = softmax_backward(as_batched(grad), as_batched(e), as_batched(s), tau.item<double>());
  return {grad_s.reshape(s.sizes()).to(s.scalar_type()), grad_tau.to(tau.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("softmax_adjacency", &softmax_adjacency_forward);
  m.impl("softmax_adjacency_backward", &softmax_adjacency_backward);
}

}  // namespace csad::cpu
