// The masked estimator loss from pair scores on CUDA, with Ω built from labels on the fly (or read
// from a bool mask) inside the kernels of mi_kernels.cu. Mirrors csrc/cpu/cross_sample_mi.cpp.
//
// STATUS: syntax-checked against torch 2.13's headers, but NOT yet compiled into the extension (that
// needs a CUDA build of torch) nor run on a GPU; tests/test_cuda_ops.py is the check to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "cuda_common.h"

namespace csad::gpu {

std::tuple<at::Tensor, at::Tensor> cross_sample_mi_forward(const at::Tensor& m, const c10::optional<at::Tensor>& labels,
                                                           const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                                           const std::string& estimator, const std::string& reduction) {
  check_cuda(m, "m");
  const c10::cuda::OptionalCUDAGuard guard(m.device());
  const PairsInput pairs(labels, mask, m.size(-1), tolerance, m.device());
  auto [value, stats] =
      mi_forward(as_batched(m), at::Tensor(), pairs.view, parse_estimator(estimator), parse_mean(reduction));
  auto batch = m.sizes().vec();
  batch.resize(batch.size() - 2);
  return {value.reshape(batch).to(m.scalar_type()), stats};
}

at::Tensor cross_sample_mi_backward(const at::Tensor& grad, const at::Tensor& m, const at::Tensor& stats,
                                    const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask,
                                    int64_t tolerance, const std::string& estimator) {
  check_cuda(grad, "grad");
  check_cuda(m, "m");
  check_cuda(stats, "stats");
  const c10::cuda::OptionalCUDAGuard guard(m.device());
  const PairsInput pairs(labels, mask, m.size(-1), tolerance, m.device());
  const auto mb = as_batched(m);
  const auto grad_value = grad.to(mb.scalar_type()).contiguous().reshape({mb.size(0)});
  auto grad_m = std::get<0>(mi_backward(grad_value, mb, at::Tensor(), stats, pairs.view, parse_estimator(estimator)));
  return grad_m.reshape(m.sizes()).to(m.scalar_type());
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("cross_sample_mi", &cross_sample_mi_forward);
  m.impl("cross_sample_mi_backward", &cross_sample_mi_backward);
}

}  // namespace csad::gpu
