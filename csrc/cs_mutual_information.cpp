// The fused cross-sample MI estimator (DESIGN.md §2), forward and backward, written once over the
// per-device primitives csad::cpu::Primitives (csrc/cpu/common.h) and csad::gpu::Primitives
// (csrc/cuda/cuda_common.h). The dispatcher is the one device branch: the CPU key gets the
// composite over the CPU primitives and, in a build with CUDA, the CUDA key the one over the CUDA
// primitives.
//
// Forward: normalise u and v; content similarity by one GEMM; each graph's Gram GEMM turned into its
// softmax adjacency; RWR by LU inverses, renormalised; structural similarity by two GEMMs; the masked
// loss with Ω (and the groups) built from labels on the fly. cs/jsd score pairs with M = alpha·x; ms
// keeps x unscaled and uses w₊ = alpha, w₋ = alpha_neg (None: alpha) as the two sides' scales.
//
// Backward: computes only the gradients that output_mask asks for, and of the graph work only the
// side (y from u, b from v) that one of them needs.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <string>
#include <tuple>
#include <vector>

#include "primitives.h"

namespace csad {
namespace {

// What the forward hands to the backward, in this order; csad_kernels/extension/cs_mutual_information.py
// EstimatorState names the same fields. The graph fields are empty for similarity="content". In the
// backward a field that none of the requested gradients reads may be absent (undefined).
struct EstimatorState {
  at::Tensor u_normalized, v_normalized;  // (B, N, d) rows over their norms
  at::Tensor u_inv_norms, v_inv_norms;    // (B, N) 1 / max(|row|, eps)
  at::Tensor e_y, e_b;                    // (B, N, N) softmax graphs of u_normalized, v_normalized
  at::Tensor r_y, r_b;                    // (B, N, N) their RWR matrices
  at::Tensor w_row_sums_y, w_row_sums_b;  // (B, N) row sums of W = (I - cE)^-1 (W is rebuilt from R)
  at::Tensor scores;                      // (B, N, N) unscaled pair scores
  at::Tensor stats;                       // (B, kStats) float64, csrc/shared.h

  std::vector<at::Tensor> to_list() const {
    return {u_normalized, v_normalized, u_inv_norms, v_inv_norms, e_y, e_b, r_y, r_b, w_row_sums_y, w_row_sums_b,
            scores, stats};
  }

  static EstimatorState from_list(const c10::List<c10::optional<at::Tensor>>& fields) {
    TORCH_CHECK(fields.size() == 12, "csad::cs_mutual_information_backward: state must have 12 fields, got ",
                fields.size());
    const auto field = [&](size_t i) { return fields.get(i).value_or(at::Tensor()); };
    return {field(0), field(1), field(2), field(3), field(4),  field(5),
            field(6), field(7), field(8), field(9), field(10), field(11)};
  }
};

// The gradients the backward computes, in the order of its outputs.
struct RequestedGrads {
  bool u, v, alpha, tau_y, tau_b, alpha_neg;
  explicit RequestedGrads(const std::array<bool, 6>& mask)
      : u(mask[0]), v(mask[1]), alpha(mask[2]), tau_y(mask[3]), tau_b(mask[4]), alpha_neg(mask[5]) {}
};

// Each side's scale as the masked loss reads it: alpha for both (cs/jsd), or w₊ = alpha and
// w₋ = alpha_neg (ms; undefined: alpha).
std::tuple<at::Tensor, at::Tensor> side_scales(Estimator estimator, const at::Tensor& alpha,
                                               const c10::optional<at::Tensor>& alpha_neg) {
  const bool separate_neg = estimator == Estimator::kMs && alpha_neg.has_value();
  return {alpha, separate_neg ? *alpha_neg : at::Tensor()};
}

const at::Tensor& required(const at::Tensor& field, const char* name) {
  TORCH_CHECK(field.defined(), "csad::cs_mutual_information_backward: the requested gradients need state field ",
              name);
  return field;
}

// The structural similarity SCE(R_y, R_b) (B, N, N) from state's normalised rows; fills state's
// graph fields.
template <typename Primitives>
at::Tensor structural_forward(EstimatorState& state, const at::Tensor& tau_y, const at::Tensor& tau_b, double c) {
  const auto& un = state.u_normalized;
  const auto& vn = state.v_normalized;
  state.e_y = Primitives::softmax_rows(at::bmm(un, un.transpose(1, 2)), tau_y);
  state.e_b = Primitives::softmax_rows(at::bmm(vn, vn.transpose(1, 2)), tau_b);
  // The two graphs one after the other: CPU LAPACK must not run inside at::parallel_for (issue 15).
  std::tie(state.r_y, state.w_row_sums_y) = Primitives::rwr_forward(state.e_y, c);
  std::tie(state.r_b, state.w_row_sums_b) = Primitives::rwr_forward(state.e_b, c);
  return Primitives::sce_forward(state.r_y, state.r_b);
}

template <typename Primitives>
std::tuple<at::Tensor, std::vector<at::Tensor>> forward(
    const at::Tensor& u, const at::Tensor& v, const c10::optional<at::Tensor>& labels,
    const c10::optional<at::Tensor>& mask, int64_t tolerance, const at::Tensor& alpha, const at::Tensor& tau_y,
    const at::Tensor& tau_b, double c, const std::string& similarity_name, const std::string& estimator_name,
    const std::string& reduction, const c10::optional<at::Tensor>& groups,
    const c10::optional<at::Tensor>& alpha_neg) {
  Primitives::check_devices(u, v, "cs_mutual_information");
  TORCH_CHECK(u.sizes() == v.sizes() && u.dim() >= 2, "csad::cs_mutual_information: u and v must share a shape");
  const typename Primitives::Scope scope(u.device());
  const Similarity similarity(similarity_name);
  const Estimator estimator = parse_estimator(estimator_name);
  const bool mean = parse_mean(reduction);
  const auto pairs = Primitives::pairs(PairsSpec{labels, mask, tolerance, groups}, u.size(-2), u.device());
  const auto ub = as_batched(u), vb = as_batched(v);
  EstimatorState state;
  std::tie(state.u_normalized, state.u_inv_norms) = Primitives::normalize_rows(ub);
  std::tie(state.v_normalized, state.v_inv_norms) = Primitives::normalize_rows(vb);
  const auto& un = state.u_normalized;
  const auto& vn = state.v_normalized;
  for (at::Tensor* graph_field : {&state.e_y, &state.e_b, &state.r_y, &state.r_b, &state.w_row_sums_y,
                                  &state.w_row_sums_b}) {
    *graph_field = at::empty({0}, ub.options());  // one each: outputs must not alias
  }
  at::Tensor scores = similarity.content ? at::bmm(un, vn.transpose(1, 2)) : at::Tensor();
  if (similarity.structural) {
    auto structural_scores = structural_forward<Primitives>(state, tau_y, tau_b, c);
    scores = similarity.content ? scores.add_(structural_scores) : structural_scores;
  }
  state.scores = scores;
  const auto [pos, neg] = side_scales(estimator, alpha, alpha_neg);
  at::Tensor value;
  std::tie(value, state.stats) = Primitives::mi_forward(scores, pos, neg, pairs, estimator, mean);
  return {value.reshape(batch_shape(u)).to(u.scalar_type()), state.to_list()};
}

// Backward of a graph E = softmax_rows(tau * n n^T) from dL/dE (consumed): returns dL/dtau and,
// when grad_normalized is given, adds dL/dn into it. The Gram matrix is recomputed (N^2 d), not saved.
template <typename Primitives>
at::Tensor graph_backward(at::Tensor grad_e, const at::Tensor& e, const at::Tensor& normalized, const at::Tensor& tau,
                          at::Tensor* grad_normalized) {
  const auto gram = at::bmm(normalized, normalized.transpose(1, 2));
  auto [grad_gram, grad_tau] = Primitives::softmax_backward(std::move(grad_e), e, gram, tau);
  if (grad_normalized != nullptr) {
    grad_normalized->baddbmm_(grad_gram, normalized).baddbmm_(grad_gram.transpose(1, 2), normalized);
  }
  return grad_tau;
}

// dL/dtau of one graph's temperature from dL/dS (y: r = R_y, r_other = R_b; b: the two swapped and
// grad_scores transposed), adding dL/dn into grad_normalized when given.
template <typename Primitives>
at::Tensor structural_side_backward(const at::Tensor& grad_scores, const at::Tensor& r, const at::Tensor& r_other,
                                    const at::Tensor& w_row_sums, const at::Tensor& e, const at::Tensor& normalized,
                                    const at::Tensor& tau, double c, at::Tensor* grad_normalized) {
  auto grad_r = Primitives::sce_side_grad(grad_scores, r, r_other);
  auto grad_e = Primitives::rwr_backward(std::move(grad_r), r, w_row_sums, c);
  return graph_backward<Primitives>(std::move(grad_e), e, normalized, tau, grad_normalized);
}

// (dI/dalpha, dI/dalpha_neg), each undefined unless requested. ms without alpha_neg: w₋ = alpha,
// and both sides' gradients go to alpha.
std::tuple<at::Tensor, at::Tensor> scale_grads(const RequestedGrads& wanted, Estimator estimator,
                                               const at::Tensor& grad_value, const at::Tensor& side_sums,
                                               const at::Tensor& stats, const at::Tensor& alpha,
                                               const c10::optional<at::Tensor>& alpha_neg) {
  at::Tensor grad_alpha, grad_alpha_neg;
  if (estimator == Estimator::kMs) {
    std::tie(grad_alpha, grad_alpha_neg) = ms_input_grads(grad_value, side_sums, stats, alpha, alpha_neg);
  } else {
    grad_alpha = grad_like(side_sums.sum(), alpha);
  }
  return {wanted.alpha ? grad_alpha : at::Tensor(), wanted.alpha_neg ? grad_alpha_neg : at::Tensor()};
}

// dL/d(raw rows) (..., N, d) in grad's dtype from dL/d(normalised rows) grad_normalized (B, N, d),
// consumed; grad is dL/dI, whose shape gives the leading dims.
template <typename Primitives>
at::Tensor feature_grad(at::Tensor& grad_normalized, const at::Tensor& normalized, const at::Tensor& inv_norms,
                        const at::Tensor& grad) {
  Primitives::normalize_backward_(grad_normalized, normalized, inv_norms);
  auto shape = grad.sizes().vec();
  shape.insert(shape.end(), {normalized.size(1), normalized.size(2)});
  return grad_normalized.reshape(shape).to(grad.scalar_type());
}

using Gradients = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// (du, dv, dalpha, dtau_y, dtau_b, dalpha_neg); a gradient that output_mask does not ask for, or
// that does not exist (tau for similarity="content", alpha_neg without it), is undefined.
template <typename Primitives>
Gradients backward(const at::Tensor& grad, const c10::List<c10::optional<at::Tensor>>& state_fields,
                   const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask, int64_t tolerance,
                   const at::Tensor& alpha, const at::Tensor& tau_y, const at::Tensor& tau_b, double c,
                   const std::string& similarity_name, const std::string& estimator_name,
                   const c10::optional<at::Tensor>& groups, const c10::optional<at::Tensor>& alpha_neg,
                   std::array<bool, 6> output_mask) {
  const auto state = EstimatorState::from_list(state_fields);
  const auto& scores = required(state.scores, "scores");
  Primitives::check_devices(grad, scores, "cs_mutual_information_backward");
  const typename Primitives::Scope scope(scores.device());
  const Similarity similarity(similarity_name);
  const Estimator estimator = parse_estimator(estimator_name);
  const RequestedGrads wanted(output_mask);
  const int64_t batch = scores.size(0), n = scores.size(1);
  const auto pairs = Primitives::pairs(PairsSpec{labels, mask, tolerance, groups}, n, scores.device());
  const auto grad_value = grad.to(scores.scalar_type()).contiguous().reshape({batch});
  const auto [pos, neg] = side_scales(estimator, alpha, alpha_neg);
  auto [grad_scores, side_sums] = Primitives::mi_backward(grad_value, scores, pos, neg, state.stats, pairs, estimator);
  auto [grad_alpha, grad_alpha_neg] =
      scale_grads(wanted, estimator, grad_value, side_sums, state.stats, alpha, alpha_neg);

  const bool y_graph = similarity.structural && (wanted.u || wanted.tau_y);
  const bool b_graph = similarity.structural && (wanted.v || wanted.tau_b);
  at::Tensor grad_un, grad_vn, grad_tau_y, grad_tau_b;
  if (wanted.u) {
    grad_un = similarity.content ? at::bmm(grad_scores, required(state.v_normalized, "v_normalized"))
                                 : at::zeros_like(required(state.u_normalized, "u_normalized"));
  }
  if (wanted.v) {
    grad_vn = similarity.content ? at::bmm(grad_scores.transpose(1, 2), required(state.u_normalized, "u_normalized"))
                                 : at::zeros_like(required(state.v_normalized, "v_normalized"));
  }
  if (y_graph) {
    grad_tau_y = structural_side_backward<Primitives>(
        grad_scores, required(state.r_y, "r_y"), required(state.r_b, "r_b"),
        required(state.w_row_sums_y, "w_row_sums_y"), required(state.e_y, "e_y"),
        required(state.u_normalized, "u_normalized"), tau_y, c, wanted.u ? &grad_un : nullptr);
  }
  if (b_graph) {
    grad_tau_b = structural_side_backward<Primitives>(
        grad_scores.transpose(1, 2), required(state.r_b, "r_b"), required(state.r_y, "r_y"),
        required(state.w_row_sums_b, "w_row_sums_b"), required(state.e_b, "e_b"),
        required(state.v_normalized, "v_normalized"), tau_b, c, wanted.v ? &grad_vn : nullptr);
  }
  if (wanted.u) {
    grad_un = feature_grad<Primitives>(grad_un, state.u_normalized, required(state.u_inv_norms, "u_inv_norms"), grad);
  }
  if (wanted.v) {
    grad_vn = feature_grad<Primitives>(grad_vn, state.v_normalized, required(state.v_inv_norms, "v_inv_norms"), grad);
  }
  return {grad_un,
          grad_vn,
          grad_alpha,
          wanted.tau_y ? grad_like(grad_tau_y, tau_y) : at::Tensor(),
          wanted.tau_b ? grad_like(grad_tau_b, tau_b) : at::Tensor(),
          grad_alpha_neg};
}

}  // namespace

CSAD_REGISTER_FORWARD_BACKWARD("cs_mutual_information_forward", "cs_mutual_information_backward", forward, backward)

}  // namespace csad
