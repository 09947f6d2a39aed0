// The masked estimator loss from pair scores on the CPU, with Ω built from labels on the fly.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common.h"

namespace csad::cpu {

std::tuple<at::Tensor, at::Tensor> cross_sample_mi_forward(const at::Tensor& m, const c10::optional<at::Tensor>& labels,
                                                           const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                                           const std::string& estimator, const std::string& reduction) {
  const PairsInput pairs(labels, mask, m.size(-1), tolerance);
  auto [value, stats] = mi_forward(as_batched(m), 1.0, pairs.pairs, parse_estimator(estimator), parse_mean(reduction));
  auto batch = m.sizes().vec();
  batch.resize(batch.size() - 2);
  return {value.reshape(batch).to(m.scalar_type()), stats};
}

at::Tensor cross_sample_mi_backward(const at::Tensor& grad, const at::Tensor& m, const at::Tensor& stats,
                                    const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask,
                                    int64_t tolerance, const std::string& estimator) {
  const PairsInput pairs(labels, mask, m.size(-1), tolerance);
  const auto mb = as_batched(m);
  const auto grad_value = grad.to(mb.scalar_type()).contiguous().reshape({mb.size(0)});
  auto grad_m = std::get<0>(mi_backward(grad_value, mb, 1.0, stats, pairs.pairs, parse_estimator(estimator)));
  return grad_m.reshape(m.sizes()).to(m.scalar_type());
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("cross_sample_mi", &cross_sample_mi_forward);
  m.impl("cross_sample_mi_backward", &cross_sample_mi_backward);
}

}  // namespace csad::cpu
