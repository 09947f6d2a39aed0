// What the CPU and CUDA launchers share: dtypes, shapes, the estimator's options, the steps that are
// ATen calls on both devices, and the ops' registration (CSAD_REGISTER_FORWARD_BACKWARD). Header-only;
// included by csrc/cpu/common.h and csrc/cuda/cuda_common.h (never by the plain CUDA .cu files).
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <string>
#include <tuple>
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

// as_batched(t) in storage of its own (copied where as_batched returns a view of t): for a step that
// may overwrite its input (the softmax and RWR primitives).
inline at::Tensor as_batched_copy(const at::Tensor& t) {
  auto batched = as_batched(t);
  return batched.is_alias_of(t) ? batched.clone() : batched;
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

// The smallest normal number of a float32 or float64 dtype.
inline double smallest_normal(at::ScalarType type) {
  return type == at::kDouble ? std::numeric_limits<double>::min() : std::numeric_limits<float>::min();
}

// log(max(p, smallest normal)).
inline at::Tensor safe_log(const at::Tensor& p) {
  return p.clamp_min(smallest_normal(p.scalar_type())).log_();
}

// S = 1/2 (P log(Q)^T + log(P) Q^T): (batch, N, K), (batch, M, K) -> (batch, N, M). ATen only: the
// Primitives of both devices use it.
inline at::Tensor sce_forward(const at::Tensor& p, const at::Tensor& q) {
  auto out = at::bmm(p, safe_log(q).transpose(1, 2));
  return out.baddbmm_(safe_log(p), q.transpose(1, 2), /*beta=*/0.5, /*alpha=*/0.5);
}

// x (..., N, d) and y (..., M, d) with the same leading dims and d.
inline void check_row_pair(const at::Tensor& x, const at::Tensor& y, const char* op) {
  TORCH_CHECK(x.dim() >= 2 && y.dim() == x.dim(), "csad::", op, ": inputs must have the same rank >= 2, got ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(x.sizes().slice(0, x.dim() - 2) == y.sizes().slice(0, y.dim() - 2) && x.size(-1) == y.size(-1),
              "csad::", op, ": inputs (..., N, d) and (..., M, d) must share leading dims and d, got ", x.sizes(),
              " and ", y.sizes());
}

// cs (Eq. 2), jsd (Eq. 1) and ms (the authors' multi-similarity form): DESIGN.md §2.
enum class Estimator { kCs, kJsd, kMs };

inline Estimator parse_estimator(const std::string& name) {
  TORCH_CHECK(name == "cs" || name == "jsd" || name == "ms", "csad: estimator must be 'cs', 'jsd' or 'ms', got '",
              name, "'");
  return name == "cs" ? Estimator::kCs : name == "jsd" ? Estimator::kJsd : Estimator::kMs;
}

// Numbers per problem that the masked loss's forward hands to its backward (float64): per side s
// (0: Ω, 1: ¬Ω) stats[2s] = the side's max x and stats[2s + 1] = sigmoid(level) for cs/ms
// (level = lse − log(count) for "mean", lse for "sum"), (0, weight 1/count or 1) for jsd;
// stats[4 + s] = softplus(level) for cs/ms (the side's term, before ms divides it by its scale);
// stats[6 + s] = log Σ exp(x − max) for cs/ms (lse = max + this). The backward's weight of a pair is
// sigmoid(level) · exp((x − max) − stats[6 + s]): with the lse rounded to one number (~1e4 for
// |x| ~ 1e4) instead, every weight of its side would carry that rounding. An empty side keeps zeros.
constexpr int64_t kStats = 8;

// dI/dw₊ and dI/dw₋ of estimator="ms" (0-d, float64) from the backward's per-side sums
// side_sums (batch, 2) = Σ_side grad_value · dI/dx · x and the forward's stats (batch, kStats):
// for I_side = −softplus(level(w))/w, dI/dw = Σ_b grad_value_b softplus(level_b)/w² + side_sum/w.
// Device-agnostic (ATen ops only): w_pos/w_neg stay on their device.
inline std::tuple<at::Tensor, at::Tensor> ms_scale_grads(const at::Tensor& grad_value, const at::Tensor& side_sums,
                                                         const at::Tensor& stats, const at::Tensor& w_pos,
                                                         const at::Tensor& w_neg) {
  const auto sums = side_sums.to(at::kDouble).sum(0);
  const auto terms = (grad_value.to(at::kDouble).reshape({-1, 1}) * stats.slice(1, 4, 6)).sum(0);
  const auto wp = w_pos.to(at::kDouble).reshape({}), wn = w_neg.to(at::kDouble).reshape({});
  return {terms[0] / (wp * wp) + sums[0] / wp, terms[1] / (wn * wn) + sums[1] / wn};
}

// A scalar's gradient on the scalar's device and in its dtype.
inline at::Tensor grad_like(const at::Tensor& grad, const at::Tensor& scalar) {
  return grad.to(scalar.device(), scalar.scalar_type());
}

// ms_scale_grads as the ops return them, on the scales' devices and in their dtypes: (dI/dw_pos,
// dI/dw_neg). Without w_neg, w₋ = w_pos: both sides' gradients go to w_pos and the second is undefined.
inline std::tuple<at::Tensor, at::Tensor> ms_input_grads(const at::Tensor& grad_value, const at::Tensor& side_sums,
                                                         const at::Tensor& stats, const at::Tensor& w_pos,
                                                         const c10::optional<at::Tensor>& w_neg) {
  auto [grad_pos, grad_neg] = ms_scale_grads(grad_value, side_sums, stats, w_pos, w_neg.has_value() ? *w_neg : w_pos);
  if (!w_neg.has_value()) return {grad_like(grad_pos + grad_neg, w_pos), at::Tensor()};
  return {grad_like(grad_pos, w_pos), grad_like(grad_neg, *w_neg)};
}

inline bool parse_mean(const std::string& reduction) {
  TORCH_CHECK(reduction == "mean" || reduction == "sum", "csad: reduction must be 'mean' or 'sum', got '", reduction,
              "'");
  return reduction == "mean";
}

// Which similarities the fused estimator sums: content (cosine) and/or structural (graph).
struct Similarity {
  bool content, structural;
  explicit Similarity(const std::string& name) {
    TORCH_CHECK(name == "joint" || name == "content" || name == "structural",
                "csad: similarity must be 'joint', 'content' or 'structural', got '", name, "'");
    content = name != "structural";
    structural = name != "content";
  }
};

// Ω and the groups as the ops receive them: labels (..., N, K) with a tolerance, or a bool mask
// (..., N, N); groups (..., N), optional. Each device turns them into its PairsInput.
struct PairsSpec {
  const c10::optional<at::Tensor>& labels;
  const c10::optional<at::Tensor>& mask;
  int64_t tolerance;
  const c10::optional<at::Tensor>& groups;
};

}  // namespace csad

// Registers an op's two functions, templates over the Primitives written once in csrc/<op>.cpp:
// forward<Primitives> as the schema forward_op and backward<Primitives> as backward_op (csrc/csad.cpp),
// for the CPU key and, in a build with CUDA, the CUDA key. Used at namespace scope in a file that
// includes <torch/library.h> and, under WITH_CUDA, csrc/cuda/cuda_common.h.
#define CSAD_REGISTER_FORWARD_BACKWARD(forward_op, backward_op, forward, backward) \
  TORCH_LIBRARY_IMPL(csad, CPU, m) {                                              \
    m.impl(forward_op, &forward<::csad::cpu::Primitives>);                         \
    m.impl(backward_op, &backward<::csad::cpu::Primitives>);                       \
  }                                                                               \
  CSAD_REGISTER_CUDA_FORWARD_BACKWARD(forward_op, backward_op, forward, backward)

// The CUDA half of CSAD_REGISTER_FORWARD_BACKWARD: empty without WITH_CUDA.
#ifdef WITH_CUDA
#define CSAD_REGISTER_CUDA_FORWARD_BACKWARD(forward_op, backward_op, forward, backward) \
  TORCH_LIBRARY_IMPL(csad, CUDA, m) {                                                  \
    m.impl(forward_op, &forward<::csad::gpu::Primitives>);                              \
    m.impl(backward_op, &backward<::csad::gpu::Primitives>);                            \
  }
#else
#define CSAD_REGISTER_CUDA_FORWARD_BACKWARD(forward_op, backward_op, forward, backward)
#endif
