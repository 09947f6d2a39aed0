// Inverse symmetric cross-entropy on the CPU: two GEMMs forward, four backward.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"

namespace csad::cpu {
at::Tensor symmetric_cross_entropy_forward(const at::Tensor& p, const at::Tensor& q) {
  return sce_forward(as_batched(p), as_batched(q)).reshape(pair_shape(p, q)).to(p.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> symmetric_cross_entropy_backward(const at::Tensor& grad, const at::Tensor& p,
                                                                    const at::Tensor& q) {
  auto [grad_p, grad_q] = sce_backward(as_batched(grad), as_batched(p), as_batched(q));
  return {grad_p.reshape(p.sizes()).to(p.scalar_type()), grad_q.reshape(q.sizes()).to(q.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("symmetric_cross_entropy", &symmetric_cross_entropy_forward);
  m.impl("symmetric_cross_entropy_backward", &symmetric_cross_entropy_backward);
}

}  // namespace csad::cpu
