// Random Walk with Restart on the CPU: LU inverse of (I - cE), rows renormalised in place.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"

namespace csad::cpu {

std::tuple<at::Tensor, at::Tensor> rwr_op(const at::Tensor& e, double c) {
  auto [r, w_row_sums] = rwr_forward(as_batched(e), c);
  auto batch = e.sizes().vec();
  batch.pop_back();
  return {r.reshape(e.sizes()).to(e.scalar_type()), w_row_sums.reshape(batch)};
}

at::Tensor rwr_backward_op(const at::Tensor& grad, const at::Tensor& r, const at::Tensor& w_row_sums, double c) {
  const auto rb = as_batched(r);
  const auto sums = w_row_sums.to(rb.scalar_type()).contiguous().reshape({rb.size(0), rb.size(1)});
  return rwr_backward(as_batched(grad).clone(), rb, sums, c).reshape(r.sizes()).to(r.scalar_type());
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("rwr", &rwr_op);
  m.impl("rwr_backward", &rwr_backward_op);
}

}  // namespace csad::cpu
