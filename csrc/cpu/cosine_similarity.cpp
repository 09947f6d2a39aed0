// Batched cosine similarity on the CPU: out[b, i, j] = <x_i, y_j> / (max(|x_i|, eps) max(|y_j|, eps)),
// eps = 1e-12 as in F.normalize. One pass normalises the rows, one BLAS GEMM does the rest.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"

namespace csad::cpu {
namespace {

void check_inputs(const at::Tensor& x, const at::Tensor& y) {
  TORCH_CHECK(x.device().is_cpu() && y.device().is_cpu(), "csad::cosine_similarity (CPU): x and y must be CPU tensors");
  check_row_pair(x, y, "cosine_similarity");
}

}  // namespace

at::Tensor cosine_similarity_forward(const at::Tensor& x, const at::Tensor& y) {
  check_inputs(x, y);
  const auto xb = as_batched(x), yb = as_batched(y);
  const auto xn = scale_rows(xb, inverse_row_norms(xb)), yn = scale_rows(yb, inverse_row_norms(yb));
  return at::bmm(xn, yn.transpose(1, 2)).reshape(pair_shape(x, y)).to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> cosine_similarity_backward(const at::Tensor& grad, const at::Tensor& x,
                                                              const at::Tensor& y) {
  check_inputs(x, y);
  const auto xb = as_batched(x), yb = as_batched(y);
  const auto inv_x = inverse_row_norms(xb), inv_y = inverse_row_norms(yb);
  const auto xn = scale_rows(xb, inv_x), yn = scale_rows(yb, inv_y);
  const auto g = grad.to(xb.scalar_type()).contiguous().reshape({xb.size(0), xb.size(1), yb.size(1)});
  auto grad_x = at::bmm(g, yn);
  auto grad_y = at::bmm(g.transpose(1, 2), xn);
  normalize_backward_(grad_x, xn, inv_x);
  normalize_backward_(grad_y, yn, inv_y);
  return {grad_x.reshape(x.sizes()).to(x.scalar_type()), grad_y.reshape(y.sizes()).to(y.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("cosine_similarity", &cosine_similarity_forward);
  m.impl("cosine_similarity_backward", &cosine_similarity_backward);
}

}  // namespace csad::cpu
