// What the CPU and CUDA launchers share: dtypes, shapes and the estimator's options. Header-only;
// included by csrc/cpu/common.h and csrc/cuda/cuda_common.h (never by the plain CUDA .cu files).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace csad {

// Fused backends compute in float32 (float16/bfloat16 are upcast) or float64.
inline at::ScalarType compute_type(at::ScalarType type) {
  return (type == at::kHalf || type == at::kBFloat16) ? at::kFloat : type;
}

// (batch, rows, cols) contiguous copy/view of a (..., rows, cols) tensor in the compute dtype.
inline at::Tensor as_batched(const at::Tensor& t) {
  return t.to(compute_type(t.scalar_type())).contiguous().reshape({-1, t.size(-2), t.size(-1)});
}

// The leading (batch) dims of a (..., rows, cols) tensor.
inline std::vector<int64_t> batch_shape(const at::Tensor& t) {
  return std::vector<int64_t>(t.sizes().begin(), t.sizes().end() - 2);
}

// The shape of the pairwise result of x (..., N, d) and y (..., M, d): (..., N, M).
inline std::vector<int64_t> pair_shape(const at::Tensor& x, const at::Tensor& y) {
  auto shape = x.sizes().vec();
  shape.back() = y.size(-2);
  return shape;
}

// x (..., N, d) and y (..., M, d) with the same leading dims and d.
inline void check_row_pair(const at::Tensor& x, const at::Tensor& y, const char* op) {
  TORCH_CHECK(x.dim() >= 2 && y.dim() == x.dim(), "csad::", op, ": inputs must have the same rank >= 2, got ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(x.sizes().slice(0, x.dim() - 2) == y.sizes().slice(0, y.dim() - 2) && x.size(-1) == y.size(-1),
              "csad::", op, ": inputs (..., N, d) and (..., M, d) must share leading dims and d, got ", x.sizes(),
              " and ", y.sizes());
}

enum class Estimator { kCs, kJsd };

inline Estimator parse_estimator(const std::string& name) {
  TORCH_CHECK(name == "cs" || name == "jsd", "csad: estimator must be 'cs' or 'jsd', got '", name, "'");
  return name == "cs" ? Estimator::kCs : Estimator::kJsd;
}

inline bool parse_mean(const std::string& reduction) {
  TORCH_CHECK(reduction == "mean" || reduction == "sum", "csad: reduction must be 'mean' or 'sum', got '", reduction,
              "'");
  return reduction == "mean";
}

// similarity / estimator / reduction of the fused estimator.
struct EstimatorOptions {
  bool content, structural;
  Estimator estimator;
  bool mean;
  EstimatorOptions(const std::string& similarity, const std::string& estimator_name, const std::string& reduction)
      : estimator(parse_estimator(estimator_name)), mean(parse_mean(reduction)) {
    TORCH_CHECK(similarity == "joint" || similarity == "content" || similarity == "structural",
                "csad: similarity must be 'joint', 'content' or 'structural', got '", similarity, "'");
    content = similarity != "structural";
    structural = similarity != "content";
  }
};

}  // namespace csad
