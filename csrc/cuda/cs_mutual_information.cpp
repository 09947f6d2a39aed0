// The whole cross-sample MI estimator on CUDA, forward and backward (DESIGN.md §2). Mirrors
// csrc/cpu/cs_mutual_information.cpp step for step, with the same outputs and saved tensors.
//
// Forward: normalise u, v (one kernel each); content similarity by one cuBLAS GEMM; each graph's
// Gram GEMM turned into its softmax adjacency in place by a kernel; RWR by at::linalg_inv_ex (no error check,
// so no host sync; cuSOLVER), renormalised in place by a kernel; structural similarity by two GEMMs; the masked
// loss by the kernels of mi_kernels.cu with Ω and the groups built from labels on the fly (ms: the
// unscaled similarity with w₊ = alpha, w₋ = alpha_neg). Saved for the
// backward: the normalised rows, E, R and W's row sums (W is rebuilt from R), the unscaled scores
// and four numbers per problem. alpha, tau_y and tau_b stay on the device (no synchronisation).
//
// STATUS: syntax-checked against torch 2.13's headers, but NOT yet compiled into the extension (that
// needs a CUDA build of torch) nor run on a GPU; tests/test_cuda_ops.py and
// tests/test_ms_groups_backends.py are the checks to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "cuda_common.h"

namespace csad::gpu {
namespace {

using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                 at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The two sides' scales: alpha for both (cs/jsd), or w₊ = alpha and w₋ = alpha_neg (ms; None: alpha).
Scales scales_of(Estimator estimator, const at::Tensor& alpha, const c10::optional<at::Tensor>& alpha_neg) {
  if (estimator != Estimator::kMs || !alpha_neg.has_value()) return {alpha, at::Tensor()};
  return {alpha, *alpha_neg};
}

}  // namespace

ForwardResult cs_mutual_information_forward(const at::Tensor& u, const at::Tensor& v,
                                            const c10::optional<at::Tensor>& labels,
                                            const c10::optional<at::Tensor>& mask, int64_t tolerance,
                                            const at::Tensor& alpha, const at::Tensor& tau_y, const at::Tensor& tau_b,
                                            double c, const std::string& similarity, const std::string& estimator,
                                            const std::string& reduction, const c10::optional<at::Tensor>& groups,
                                            const c10::optional<at::Tensor>& alpha_neg) {
  TORCH_CHECK(u.is_cuda() && v.is_cuda() && u.device() == v.device(),
              "csad::cs_mutual_information (CUDA): u and v must be CUDA tensors on one device, got ", u.device(),
              " and ", v.device());
  TORCH_CHECK(u.sizes() == v.sizes() && u.dim() >= 2, "csad::cs_mutual_information: u and v must share a shape");
  const c10::cuda::OptionalCUDAGuard guard(u.device());
  const Fp32GemmGuard fp32_gemms;
  const EstimatorOptions options(similarity, estimator, reduction);
  const int64_t n = u.size(-2);
  const PairsInput pairs(labels, mask, n, tolerance, u.device(), groups);
  const auto ub = as_batched(u), vb = as_batched(v);
  const auto [un, inv_u] = normalize_rows(ub);
  const auto [vn, inv_v] = normalize_rows(vb);
  const auto empty = [&] { return at::empty({0}, ub.options()); };  // outputs must not alias
  at::Tensor ey = empty(), eb = empty(), ry = empty(), rb = empty(), wsum_y = empty(), wsum_b = empty();
  at::Tensor scores = options.content ? at::bmm(un, vn.transpose(1, 2)) : at::Tensor();
  if (options.structural) {
    ey = at::bmm(un, un.transpose(1, 2));
    softmax_rows_(ey, tau_y);
    eb = at::bmm(vn, vn.transpose(1, 2));
    softmax_rows_(eb, tau_b);
    std::tie(ry, wsum_y) = rwr_forward(ey, c);
    std::tie(rb, wsum_b) = rwr_forward(eb, c);
    auto structural_scores = sce_forward(ry, rb);
    scores = options.content ? scores.add_(structural_scores) : structural_scores;
  }
  auto [value, stats] =
      mi_forward(scores, scales_of(options.estimator, alpha, alpha_neg), pairs.view, options.estimator, options.mean);
  value = value.reshape(batch_shape(u)).to(u.scalar_type());
  return {value, un, vn, inv_u, inv_v, ey, eb, ry, rb, wsum_y, wsum_b, scores, stats};
}

namespace {
// Backward of a graph E = softmax_rows(tau * n n^T) from dL/dE (consumed): adds dL/dn into
// grad_normalized and returns dL/dtau. The Gram matrix is recomputed (N^2 d) rather than saved.
at::Tensor graph_backward(at::Tensor grad_e, const at::Tensor& e, const at::Tensor& normalized, const at::Tensor& tau,
                          at::Tensor& grad_normalized) {
  const auto gram = at::bmm(normalized, normalized.transpose(1, 2));
  auto grad_tau = softmax_backward_(grad_e, e, gram, tau);  // grad_e is now dL/dGram
  grad_normalized.baddbmm_(grad_e, normalized).baddbmm_(grad_e.transpose(1, 2), normalized);
  return grad_tau;
}
}  // namespace

// (du, dv, dalpha, dtau_y, dtau_b, dalpha_neg), as csrc/cpu/cs_mutual_information.cpp.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cs_mutual_information_backward(
    const at::Tensor& grad, const at::Tensor& un, const at::Tensor& vn, const at::Tensor& inv_u,
    const at::Tensor& inv_v, const at::Tensor& ey, const at::Tensor& eb, const at::Tensor& ry, const at::Tensor& rb,
    const at::Tensor& wsum_y, const at::Tensor& wsum_b, const at::Tensor& scores, const at::Tensor& stats,
    const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask, int64_t tolerance,
    const at::Tensor& u, const at::Tensor& alpha, const at::Tensor& tau_y, const at::Tensor& tau_b, double c,
    const std::string& similarity, const std::string& estimator, const std::string& reduction,
    const c10::optional<at::Tensor>& groups, const c10::optional<at::Tensor>& alpha_neg) {
  check_cuda(grad, "grad");
  check_cuda(un, "un");
  const c10::cuda::OptionalCUDAGuard guard(un.device());
  const Fp32GemmGuard fp32_gemms;
  const EstimatorOptions options(similarity, estimator, reduction);
  const int64_t n = un.size(1);
  const PairsInput pairs(labels, mask, n, tolerance, un.device(), groups);
  const auto grad_value = grad.to(un.scalar_type()).contiguous().reshape({un.size(0)});
  auto [grad_scores, side_sums] = mi_backward(grad_value, scores, scales_of(options.estimator, alpha, alpha_neg),
                                              stats, pairs.view, options.estimator);
  at::Tensor grad_alpha, grad_alpha_neg = at::zeros({}, alpha_neg.has_value() ? alpha_neg->options() : alpha.options());
  if (options.estimator == Estimator::kMs) {
    auto [gp, gn] = ms_scale_grads(grad_value, side_sums, stats, alpha, alpha_neg.has_value() ? *alpha_neg : alpha);
    if (alpha_neg.has_value()) {
      grad_alpha_neg = gn.to(alpha_neg->device(), alpha_neg->scalar_type());
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
    grad_tau_y = graph_backward(rwr_backward(grad_ry, ry, wsum_y, c), ey, un, tau_y, grad_un);
    grad_tau_b = graph_backward(rwr_backward(grad_rb, rb, wsum_b, c), eb, vn, tau_b, grad_vn);
  }
  normalize_backward_(grad_un, un, inv_u);
  normalize_backward_(grad_vn, vn, inv_v);
  return {grad_un.reshape(u.sizes()).to(u.scalar_type()), grad_vn.reshape(u.sizes()).to(u.scalar_type()),
          grad_alpha.to(alpha.device(), alpha.scalar_type()), grad_tau_y.to(tau_y.device(), tau_y.scalar_type()),
          grad_tau_b.to(tau_b.device(), tau_b.scalar_type()), grad_alpha_neg};
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("cs_mutual_information_forward", &cs_mutual_information_forward);
  m.impl("cs_mutual_information_backward", &cs_mutual_information_backward);
}

}  // namespace csad::gpu
