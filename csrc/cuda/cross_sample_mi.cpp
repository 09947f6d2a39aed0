// The masked estimator loss from pair scores on CUDA, with Ω and the groups built from labels on the
// fly (or Ω read from a bool mask) inside the kernels of mi_kernels.cu. Mirrors
// csrc/cpu/cross_sample_mi.cpp.
//
// STATUS: compiled (syntax-checked by csrc/cuda/check_compile.sh) but NOT yet run on a GPU;
// tests/test_cuda_ops.py and tests/test_ms_groups_backends.py are the checks to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "cuda_common.h"

namespace csad::gpu {
namespace {

// cs/jsd: m already carries alpha (scale 1); ms: m is the unscaled x, w_neg None meaning w_pos.
Scales scales_of(Estimator estimator, const c10::optional<at::Tensor>& w_pos, const c10::optional<at::Tensor>& w_neg) {
  if (estimator != Estimator::kMs) return {};
  TORCH_CHECK(w_pos.has_value(), "csad::cross_sample_mi: estimator='ms' needs w_pos");
  return {*w_pos, w_neg.has_value() ? *w_neg : at::Tensor()};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cross_sample_mi_forward(const at::Tensor& m, const c10::optional<at::Tensor>& labels,
                                                           const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                                           const std::string& estimator, const std::string& reduction,
                                                           const c10::optional<at::Tensor>& groups,
                                                           const c10::optional<at::Tensor>& w_pos,
                                                           const c10::optional<at::Tensor>& w_neg) {
  check_cuda(m, "m");
  const c10::cuda::OptionalCUDAGuard guard(m.device());
  const PairsInput pairs(labels, mask, m.size(-1), tolerance, m.device(), groups);
  const Estimator kind = parse_estimator(estimator);
  auto [value, stats] = mi_forward(as_batched(m), scales_of(kind, w_pos, w_neg), pairs.view, kind, parse_mean(reduction));
  auto batch = m.sizes().vec();
  batch.resize(batch.size() - 2);
  return {value.reshape(batch).to(m.scalar_type()), stats};
}

// (dL/dm, dL/dw_pos, dL/dw_neg), as csrc/cpu/cross_sample_mi.cpp.
std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_sample_mi_backward(
    const at::Tensor& grad, const at::Tensor& m, const at::Tensor& stats, const c10::optional<at::Tensor>& labels,
    const c10::optional<at::Tensor>& mask, int64_t tolerance, const std::string& estimator,
    const c10::optional<at::Tensor>& groups, const c10::optional<at::Tensor>& w_pos,
    const c10::optional<at::Tensor>& w_neg) {
  check_cuda(grad, "grad");
  check_cuda(m, "m");
  check_cuda(stats, "stats");
  const c10::cuda::OptionalCUDAGuard guard(m.device());
  const PairsInput pairs(labels, mask, m.size(-1), tolerance, m.device(), groups);
  const Estimator kind = parse_estimator(estimator);
  const auto mb = as_batched(m);
  const auto grad_value = grad.to(mb.scalar_type()).contiguous().reshape({mb.size(0)});
  auto [grad_m, side_sums] = mi_backward(grad_value, mb, scales_of(kind, w_pos, w_neg), stats, pairs.view, kind);
  auto grad_pos = at::zeros({}, w_pos.has_value() ? w_pos->options() : m.options());
  auto grad_neg = at::zeros({}, w_neg.has_value() ? w_neg->options() : m.options());
  if (kind == Estimator::kMs) {
    auto [gp, gn] = ms_scale_grads(grad_value, side_sums, stats, *w_pos, w_neg.has_value() ? *w_neg : *w_pos);
    if (w_neg.has_value()) {
      grad_neg = gn.to(w_neg->device(), w_neg->scalar_type());
    } else {
      gp = gp + gn;
    }
    grad_pos = gp.to(w_pos->device(), w_pos->scalar_type());
  }
  return {grad_m.reshape(m.sizes()).to(m.scalar_type()), grad_pos, grad_neg};
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("cross_sample_mi", &cross_sample_mi_forward);
  m.impl("cross_sample_mi_backward", &cross_sample_mi_backward);
}

}  // namespace csad::gpu
