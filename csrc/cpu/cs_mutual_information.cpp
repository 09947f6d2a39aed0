// The whole cross-sample MI estimator on the CPU, forward and backward (DESIGN.md §2).
//
// Forward: normalise u, v (one pass each); content similarity by one GEMM; each graph's Gram GEMM
// turned into its softmax adjacency in place; RWR by LU inverses (one matrix per LAPACK call), renormalised in place;
// structural similarity by two GEMMs; the masked loss in two passes over the scores with Ω (and
// the groups) built from labels on the fly. cs/jsd score pairs with M = alpha·x; ms keeps x unscaled
// and uses w₊ = alpha, w₋ = alpha_neg (None: alpha) as the two sides' scales. Saved for the backward: the normalised rows, E, R and W's row sums
// (W is rebuilt from R), the unscaled scores and four numbers per problem.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common.h"

namespace csad::cpu {
namespace {

using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                 at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The two sides' scales: alpha for both (cs/jsd), or w₊ = alpha and w₋ = alpha_neg (ms).
Scales scales_of(Estimator estimator, const at::Tensor& alpha, const c10::optional<at::Tensor>& alpha_neg) {
  const double pos = alpha.item<double>();
  if (estimator != Estimator::kMs) return {pos, pos};
  return {pos, alpha_neg.has_value() ? alpha_neg->item<double>() : pos};
}

}  // namespace

ForwardResult cs_mutual_information_forward(const at::Tensor& u, const at::Tensor& v,
                                            const c10::optional<at::Tensor>& labels,
                                            const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                            const at::Tensor& alpha, const at::Tensor& tau_y, const at::Tensor& tau_b,
                                            double c, const std::string& similarity, const std::string& estimator,
                                            const std::string& reduction, const c10::optional<at::Tensor>& groups,
                                            const c10::optional<at::Tensor>& alpha_neg) {
  TORCH_CHECK(u.device().is_cpu() && v.device().is_cpu(), "csad::cs_mutual_information (CPU): CPU tensors expected");
  TORCH_CHECK(u.sizes() == v.sizes() && u.dim() >= 2, "csad::cs_mutual_information: u and v must share a shape");
  const EstimatorOptions options(similarity, estimator, reduction);
  const int64_t n = u.size(-2);
  const PairsInput pairs(labels, mask, n, tolerance, groups);
  const auto ub = as_batched(u), vb = as_batched(v);
  const auto inv_u = inverse_row_norms(ub), inv_v = inverse_row_norms(vb);
  const auto un = scale_rows(ub, inv_u), vn = scale_rows(vb, inv_v);
  const auto empty = [&] { return at::empty({0}, ub.options()); };  // outputs must not alias
  at::Tensor ey = empty(), eb = empty(), ry = empty(), rb = empty(), wsum_y = empty(), wsum_b = empty();
  at::Tensor scores = options.content ? at::bmm(un, vn.transpose(1, 2)) : at::Tensor();
  if (options.structural) {
    ey = softmax_rows(at::bmm(un, un.transpose(1, 2)), tau_y.item<double>());
    eb = softmax_rows(at::bmm(vn, vn.transpose(1, 2)), tau_b.item<double>());
    // The two graphs one after the other: LAPACK must not run inside at::parallel_for (issue 15).
    std::tie(ry, wsum_y) = rwr_forward(ey, c);
    std::tie(rb, wsum_b) = rwr_forward(eb, c);
    auto structural_scores = sce_forward(ry, rb);
    scores = options.content ? scores.add_(structural_scores) : structural_scores;
  }
  auto [value, stats] =
      mi_forward(scores, scales_of(options.estimator, alpha, alpha_neg), pairs.pairs, options.estimator, options.mean);
  value = value.reshape(batch_shape(u)).to(u.scalar_type());
  return {value, un, vn, inv_u, inv_v, ey, eb, ry, rb, wsum_y, wsum_b, scores, stats};
}

namespace {
// Backward of a graph E = softmax_rows(tau * n n^T) from dL/dE: adds dL/dn into
// grad_normalized and returns dL/dtau. The Gram matrix is recomputed (N^2 d) rather than saved.
at::Tensor graph_backward(const at::Tensor& grad_e, const at::Tensor& e, const at::Tensor& normalized, double tau,
                          at::Tensor& grad_normalized) {
  const auto gram = at::bmm(normalized, normalized.transpose(1, 2));
  auto [grad_gram, grad_tau] = softmax_backward(grad_e, e, gram, tau);
  grad_normalized.baddbmm_(grad_gram, normalized).baddbmm_(grad_gram.transpose(1, 2), normalized);
  return grad_tau;
}
}  // namespace

// (du, dv, dalpha, dtau_y, dtau_b, dalpha_neg); dalpha_neg is zeros unless estimator="ms" with
// alpha_neg given (ms without it: w₋ = alpha, and both sides' gradients go to alpha).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cs_mutual_information_backward(
    const at::Tensor& grad, const at::Tensor& un, const at::Tensor& vn, const at::Tensor& inv_u,
    const at::Tensor& inv_v, const at::Tensor& ey, const at::Tensor& eb, const at::Tensor& ry, const at::Tensor& rb,
    const at::Tensor& wsum_y, const at::Tensor& wsum_b, const at::Tensor& scores, const at::Tensor& stats,
    const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask, int64_t tolerance,
    const at::Tensor& u, const at::Tensor& alpha, const at::Tensor& tau_y, const at::Tensor& tau_b, double c,
    const std::string& similarity, const std::string& estimator, const std::string& reduction,
    const c10::optional<at::Tensor>& groups, const c10::optional<at::Tensor>& alpha_neg) {
  const EstimatorOptions options(similarity, estimator, reduction);
  const int64_t n = un.size(1);
  const PairsInput pairs(labels, mask, n, tolerance, groups);
  const auto grad_value = grad.to(un.scalar_type()).contiguous().reshape({un.size(0)});
  auto [grad_scores, side_sums] = mi_backward(grad_value, scores, scales_of(options.estimator, alpha, alpha_neg),
                                              stats, pairs.pairs, options.estimator);
  at::Tensor grad_alpha, grad_alpha_neg = at::zeros({}, alpha_neg.has_value() ? alpha_neg->options() : alpha.options());
  if (options.estimator == Estimator::kMs) {
    auto [gp, gn] = ms_scale_grads(grad_value, side_sums, stats, alpha, alpha_neg.has_value() ? *alpha_neg : alpha);
    if (alpha_neg.has_value()) {
      grad_alpha_neg = gn.to(alpha_neg->scalar_type());
      grad_alpha = gp;
    } else {
      grad_alpha = gp + gn;
    }
  } else {
    grad_alpha = side_sums.sum();
  }
  at::Tensor grad_un, grad_vn;
  if (options.content) {
    grad_un = at::bmm(grad_scores, vn);
    grad_vn = at::bmm(grad_scores.transpose(1, 2), un);
  } else {
    grad_un = at::zeros_like(un);
    grad_vn = at::zeros_like(vn);
  }
  auto grad_tau_y = at::zeros({}, un.options()), grad_tau_b = at::zeros({}, un.options());
  if (options.structural) {
    auto [grad_ry, grad_rb] = sce_backward(grad_scores, ry, rb);
    grad_tau_y = graph_backward(rwr_backward(grad_ry, ry, wsum_y, c), ey, un, tau_y.item<double>(), grad_un);
    grad_tau_b = graph_backward(rwr_backward(grad_rb, rb, wsum_b, c), eb, vn, tau_b.item<double>(), grad_vn);
  }
  normalize_backward_(grad_un, un, inv_u);
  normalize_backward_(grad_vn, vn, inv_v);
  return {grad_un.reshape(u.sizes()).to(u.scalar_type()), grad_vn.reshape(u.sizes()).to(u.scalar_type()),
          grad_alpha.to(alpha.scalar_type()), grad_tau_y.to(tau_y.scalar_type()), grad_tau_b.to(tau_b.scalar_type()),
          grad_alpha_neg};
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("cs_mutual_information_forward", &cs_mutual_information_forward);
  m.impl("cs_mutual_information_backward", &cs_mutual_information_backward);
}

}  // namespace csad::cpu
