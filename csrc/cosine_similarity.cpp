// Batched cosine similarity out[b, i, j] = <x_i, y_j> / (max(|x_i|, eps) max(|y_j|, eps)), eps = 1e-12 as
// in F.normalize, forward and backward, written once over the per-device primitives (csad::cpu::Primitives,
// csad::gpu::Primitives; see csrc/cs_mutual_information.cpp) and registered for CPU and (WITH_CUDA) CUDA.
// One row pass (Primitives::normalize_rows) normalises the rows, one GEMM does the rest; the backward's two
// GEMMs go through Primitives::normalize_backward_.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "primitives.h"

namespace csad {
namespace {

template <typename Primitives>
at::Tensor forward(const at::Tensor& x, const at::Tensor& y) {
  Primitives::check_devices(x, y, "cosine_similarity");
  check_row_pair(x, y, "cosine_similarity");
  const typename Primitives::Scope scope(x.device());
  const auto xn = std::get<0>(Primitives::normalize_rows(as_batched(x)));
  const auto yn = std::get<0>(Primitives::normalize_rows(as_batched(y)));
  return at::bmm(xn, yn.transpose(1, 2)).reshape(pair_shape(x, y)).to(x.scalar_type());
}

// (dL/dx, dL/dy), each undefined unless output_mask asks for it; both read both normalised inputs.
template <typename Primitives>
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y,
                                            std::array<bool, 2> output_mask) {
  Primitives::check_devices(x, y, "cosine_similarity_backward");
  Primitives::check_devices(grad, x, "cosine_similarity_backward");
  check_row_pair(x, y, "cosine_similarity_backward");
  const typename Primitives::Scope scope(x.device());
  const auto [xn, inv_x] = Primitives::normalize_rows(as_batched(x));
  const auto [yn, inv_y] = Primitives::normalize_rows(as_batched(y));
  const auto g = grad.to(xn.scalar_type()).contiguous().reshape({xn.size(0), xn.size(1), yn.size(1)});
  at::Tensor grad_x, grad_y;
  if (output_mask[0]) {
    grad_x = at::bmm(g, yn);
    Primitives::normalize_backward_(grad_x, xn, inv_x);
    grad_x = grad_x.reshape(x.sizes()).to(x.scalar_type());
  }
  if (output_mask[1]) {
    grad_y = at::bmm(g.transpose(1, 2), xn);
    Primitives::normalize_backward_(grad_y, yn, inv_y);
    grad_y = grad_y.reshape(y.sizes()).to(y.scalar_type());
  }
  return {grad_x, grad_y};
}

}  // namespace

CSAD_REGISTER_FORWARD_BACKWARD("cosine_similarity", "cosine_similarity_backward", forward, backward)

}  // namespace csad
