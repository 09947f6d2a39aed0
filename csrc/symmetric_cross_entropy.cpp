// Inverse symmetric cross-entropy S = 1/2 (P log(Q)^T + log(P) Q^T), forward (two GEMMs) and backward (four
// GEMMs), written once over the per-device primitives (csad::cpu::Primitives, csad::gpu::Primitives; see
// csrc/cs_mutual_information.cpp) and registered for CPU and (WITH_CUDA) CUDA. The devices differ only in
// the clamped-log gradient's division inside sce_side_grad (an at::parallel_for loop or a kernel).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "primitives.h"

namespace csad {
namespace {

template <typename Primitives>
at::Tensor forward(const at::Tensor& p, const at::Tensor& q) {
  Primitives::check_devices(p, q, "symmetric_cross_entropy");
  const typename Primitives::Scope scope(p.device());
  return Primitives::sce_forward(as_batched(p), as_batched(q)).reshape(pair_shape(p, q)).to(p.scalar_type());
}

// (dL/dp, dL/dq), each undefined unless output_mask asks for it.
template <typename Primitives>
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad, const at::Tensor& p, const at::Tensor& q,
                                            std::array<bool, 2> output_mask) {
  Primitives::check_devices(p, q, "symmetric_cross_entropy_backward");
  Primitives::check_devices(grad, p, "symmetric_cross_entropy_backward");
  const typename Primitives::Scope scope(p.device());
  const auto g = as_batched(grad), pb = as_batched(p), qb = as_batched(q);
  at::Tensor grad_p, grad_q;
  if (output_mask[0]) grad_p = Primitives::sce_side_grad(g, pb, qb).reshape(p.sizes()).to(p.scalar_type());
  if (output_mask[1]) {
    grad_q = Primitives::sce_side_grad(g.transpose(1, 2), qb, pb).reshape(q.sizes()).to(q.scalar_type());
  }
  return {grad_p, grad_q};
}

}  // namespace

CSAD_REGISTER_FORWARD_BACKWARD("symmetric_cross_entropy", "symmetric_cross_entropy_backward", forward, backward)

}  // namespace csad
