// The masked estimator loss from pair scores (DESIGN.md §2), forward and backward, written once over
// the per-device primitives (csad::cpu::Primitives, csad::gpu::Primitives; see
// csrc/cs_mutual_information.cpp), with Ω and the groups built from labels on the fly (or Ω read
// from a bool mask).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "primitives.h"

namespace csad {
namespace {

// The two sides' scales (pos, neg) as the primitives read them. cs/jsd: m already carries alpha, so
// both are undefined (1); ms: m is the unscaled x, with w_pos and w_neg (undefined: w_pos).
std::tuple<at::Tensor, at::Tensor> loss_scales(Estimator estimator, const c10::optional<at::Tensor>& w_pos,
                                               const c10::optional<at::Tensor>& w_neg) {
  if (estimator != Estimator::kMs) return {};
  TORCH_CHECK(w_pos.has_value(), "csad::cross_sample_mi: estimator='ms' needs w_pos");
  return {*w_pos, w_neg.has_value() ? *w_neg : at::Tensor()};
}

// (I (...), stats (B, kStats) float64) for scores m (..., N, N).
template <typename Primitives>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& m, const c10::optional<at::Tensor>& labels,
                                           const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                           const std::string& estimator, const std::string& reduction,
                                           const c10::optional<at::Tensor>& groups,
                                           const c10::optional<at::Tensor>& w_pos,
                                           const c10::optional<at::Tensor>& w_neg) {
  Primitives::check_devices(m, m, "cross_sample_mi");
  const typename Primitives::Scope scope(m.device());
  const auto pairs = Primitives::pairs(PairsSpec{labels, mask, tolerance, groups}, m.size(-1), m.device());
  const Estimator kind = parse_estimator(estimator);
  const auto [pos, neg] = loss_scales(kind, w_pos, w_neg);
  auto [value, stats] = Primitives::mi_forward(as_batched(m), pos, neg, pairs, kind, parse_mean(reduction));
  return {value.reshape(batch_shape(m)).to(m.scalar_type()), stats};
}

// (dL/dm, dL/dw_pos, dL/dw_neg); the scale gradients are zeros unless estimator="ms" (w_neg None:
// its gradient is added to w_pos's, and the second is zeros).
template <typename Primitives>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad, const at::Tensor& m, const at::Tensor& stats, const c10::optional<at::Tensor>& labels,
    const c10::optional<at::Tensor>& mask, int64_t tolerance, const std::string& estimator,
    const c10::optional<at::Tensor>& groups, const c10::optional<at::Tensor>& w_pos,
    const c10::optional<at::Tensor>& w_neg) {
  Primitives::check_devices(grad, m, "cross_sample_mi_backward");
  Primitives::check_devices(stats, m, "cross_sample_mi_backward");
  const typename Primitives::Scope scope(m.device());
  const auto pairs = Primitives::pairs(PairsSpec{labels, mask, tolerance, groups}, m.size(-1), m.device());
  const Estimator kind = parse_estimator(estimator);
  const auto mb = as_batched(m);
  const auto grad_value = grad.to(mb.scalar_type()).contiguous().reshape({mb.size(0)});
  const auto [pos, neg] = loss_scales(kind, w_pos, w_neg);
  auto [grad_m, side_sums] = Primitives::mi_backward(grad_value, mb, pos, neg, stats, pairs, kind);
  auto grad_pos = at::zeros({}, w_pos.has_value() ? w_pos->options() : m.options());
  auto grad_neg = at::zeros({}, w_neg.has_value() ? w_neg->options() : m.options());
  if (kind == Estimator::kMs) {
    auto [ms_grad_pos, ms_grad_neg] = ms_input_grads(grad_value, side_sums, stats, *w_pos, w_neg);
    grad_pos = ms_grad_pos;
    if (w_neg.has_value()) grad_neg = ms_grad_neg;
  }
  return {grad_m.reshape(m.sizes()).to(m.scalar_type()), grad_pos, grad_neg};
}

}  // namespace

CSAD_REGISTER_FORWARD_BACKWARD("cross_sample_mi", "cross_sample_mi_backward", forward, backward)

}  // namespace csad
