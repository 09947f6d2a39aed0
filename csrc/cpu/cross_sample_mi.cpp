// The masked estimator loss from pair scores on the CPU, with Ω (and the groups) built from labels
// on the fly.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common.h"

namespace csad::cpu {
namespace {

// cs/jsd: m already carries alpha (scales 1); ms: m is the unscaled x, w_neg None meaning w_pos.
Scales scales_of(Estimator estimator, const c10::optional<at::Tensor>& w_pos, const c10::optional<at::Tensor>& w_neg) {
  if (estimator != Estimator::kMs) return {};
  TORCH_CHECK(w_pos.has_value(), "csad::cross_sample_mi: estimator='ms' needs w_pos");
  const double pos = w_pos->item<double>();
  return {pos, w_neg.has_value() ? w_neg->item<double>() : pos};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cross_sample_mi_forward(const at::Tensor& m, const c10::optional<at::Tensor>& labels,
                                                           const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                                           const std::string& estimator, const std::string& reduction,
                                                           const c10::optional<at::Tensor>& groups,
                                                           const c10::optional<at::Tensor>& w_pos,
                                                           const c10::optional<at::Tensor>& w_neg) {
  const PairsInput pairs(labels, mask, m.size(-1), tolerance, groups);
  const Estimator kind = parse_estimator(estimator);
  auto [value, stats] = mi_forward(as_batched(m), scales_of(kind, w_pos, w_neg), pairs.pairs, kind,
                                   parse_mean(reduction));
  auto batch = m.sizes().vec();
  batch.resize(batch.size() - 2);
  return {value.reshape(batch).to(m.scalar_type()), stats};
}

// (dL/dm, dL/dw_pos, dL/dw_neg); the scale gradients are zeros unless estimator="ms" (w_neg None:
// its gradient is added to w_pos's, and the second is zeros).
std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_sample_mi_backward(
    const at::Tensor& grad, const at::Tensor& m, const at::Tensor& stats, const c10::optional<at::Tensor>& labels,
    const c10::optional<at::Tensor>& mask, int64_t tolerance, const std::string& estimator,
    const c10::optional<at::Tensor>& groups, const c10::optional<at::Tensor>& w_pos,
    const c10::optional<at::Tensor>& w_neg) {
  const PairsInput pairs(labels, mask, m.size(-1), tolerance, groups);
  const Estimator kind = parse_estimator(estimator);
  const auto mb = as_batched(m);
  const auto grad_value = grad.to(mb.scalar_type()).contiguous().reshape({mb.size(0)});
  auto [grad_m, side_sums] = mi_backward(grad_value, mb, scales_of(kind, w_pos, w_neg), stats, pairs.pairs, kind);
  auto grad_pos = at::zeros({}, w_pos.has_value() ? w_pos->options() : m.options());
  auto grad_neg = at::zeros({}, w_neg.has_value() ? w_neg->options() : m.options());
  if (kind == Estimator::kMs) {
    auto [gp, gn] = ms_scale_grads(grad_value, side_sums, stats, *w_pos, w_neg.has_value() ? *w_neg : *w_pos);
    if (w_neg.has_value()) {
      grad_neg = gn.to(w_neg->scalar_type());
    } else {
      gp = gp + gn;
    }
    grad_pos = gp.to(w_pos->scalar_type());
  }
  return {grad_m.reshape(m.sizes()).to(m.scalar_type()), grad_pos, grad_neg};
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("cross_sample_mi", &cross_sample_mi_forward);
  m.impl("cross_sample_mi_backward", &cross_sample_mi_backward);
}

}  // namespace csad::cpu
