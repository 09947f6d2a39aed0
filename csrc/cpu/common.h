// Building blocks of the fused CPU kernels. Every function works on batched, contiguous
// (batch, rows, cols) tensors in the compute dtype (float32, or float64) and runs its row loops
// with at::parallel_for; the N^3 parts go to BLAS/LAPACK through ATen.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

#include "../shared.h"

namespace csad::cpu {

constexpr double kNormEps = 1e-12;

// 1 / max(|row|, eps) of each row of t -> (batch, rows).
at::Tensor inverse_row_norms(const at::Tensor& t);

// t's rows scaled by inv_norm (F.normalize).
at::Tensor scale_rows(const at::Tensor& t, const at::Tensor& inv_norm);

// Turns grad w.r.t. normalised rows n = t * inv into grad w.r.t. t, in place:
// inv * (g - n <n, g>) where the norm was not clamped, inv * g where it was.
void normalize_backward_(at::Tensor& grad, const at::Tensor& normalized, const at::Tensor& inv_norm);

// softmax_rows(tau * s) (ATen's vectorised softmax); s is consumed (scaled by tau in place).
at::Tensor softmax_rows(at::Tensor s, double tau);

// For e = softmax_rows(tau * s) and grad = dL/de (consumed: a contiguous grad becomes dL/ds in place):
// returns (dL/ds, dL/dtau), with dL/dtau = sum_ij dZ_ij (s_ij - sum_k e_ik s_ik), dZ = e * (g - <g, e>_row):
// each row of dZ sums to 0, and centring s on its e-weighted mean keeps fp32 cancellation small.
// s undefined: dL/dtau is not computed (returned undefined).
std::tuple<at::Tensor, at::Tensor> softmax_backward(at::Tensor grad, const at::Tensor& e, const at::Tensor& s,
                                                    double tau);

// Random Walk with Restart: returns R (rows of (1-c)(I - cE)^-1 renormalised) and the row sums
// of W = (I - cE)^-1, from which W = diag(row_sums) R is rebuilt in the backward.
std::tuple<at::Tensor, at::Tensor> rwr_forward(const at::Tensor& e, double c);

// dL/dE from dL/dR (consumed). dL/dE = c W^T (dL/dW) W^T.
at::Tensor rwr_backward(at::Tensor grad_r, const at::Tensor& r, const at::Tensor& w_row_sums, double c);

// dL/dp of sce_forward(p, q) from grad = dL/dS (batch, N, M); dL/dq is sce_side_grad(grad^T, q, p).
at::Tensor sce_side_grad(const at::Tensor& grad, const at::Tensor& p, const at::Tensor& q);

// Ω of a batch: labels (batch, N, K) int64 with a tolerance, or a bool mask (batch, N, N); and the
// optional groups (batch, N) int64: only pairs within one group count, on both sides.
struct Pairs {
  const int64_t* labels = nullptr;
  const bool* mask = nullptr;
  const int64_t* groups = nullptr;
  int64_t n = 0, k = 0, tolerance = 0;

  // (i, j) ∈ Ω.
  bool operator()(int64_t b, int64_t i, int64_t j) const {
    if (mask != nullptr) return mask[(b * n + i) * n + j];
    const int64_t* li = labels + (b * n + i) * k;
    const int64_t* lj = labels + (b * n + j) * k;
    for (int64_t q = 0; q < k; ++q) {
      const int64_t diff = li[q] > lj[q] ? li[q] - lj[q] : lj[q] - li[q];
      if (diff > tolerance) return false;
    }
    return true;
  }

  // (i, j) counts at all (same group, or no groups given).
  bool counted(int64_t b, int64_t i, int64_t j) const {
    return groups == nullptr || groups[b * n + i] == groups[b * n + j];
  }
};

// Keeps contiguous copies of the Ω and groups inputs alive and exposes them as Pairs.
struct PairsInput {
  at::Tensor labels, mask, groups;
  Pairs pairs;
  PairsInput(const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask, int64_t n,
             int64_t tolerance, const c10::optional<at::Tensor>& groups = c10::nullopt);
};

// The scales of the masked loss's two sides: Ω sees x = −pos·S, ¬Ω sees x = neg·S. cs/jsd:
// pos = neg = alpha (M = alpha·S); ms: pos = w₊, neg = w₋, and each side's term is divided by its scale.
struct Scales {
  double pos = 1.0, neg = 1.0;
};

// I per problem from scores S (batch, N, N). Returns (value (batch,), stats (batch, kStats)
// float64), stats as described in csrc/shared.h.
std::tuple<at::Tensor, at::Tensor> mi_forward(const at::Tensor& scores, Scales scales, const Pairs& pairs,
                                              Estimator estimator, bool mean);

// (dI/dS * grad_value (batch, N, N), side_sums (batch, 2) float64). With M = scale·S and
// D = grad_value_b · dI/dM as cs/jsd define it (for ms D is dI/dS: its 1/w and w cancel),
// side_sums[b, s] = Σ_side D·S: for cs/jsd their total is dI/dalpha, for ms they enter
// ms_scale_grads (csrc/shared.h). Pairs outside the groups get 0.
std::tuple<at::Tensor, at::Tensor> mi_backward(const at::Tensor& grad_value, const at::Tensor& scores, Scales scales,
                                               const at::Tensor& stats, const Pairs& pairs, Estimator estimator);

// The ops' steps on the CPU, with the members and signatures that the composites of csrc/*.cpp
// (the estimator, the masked loss and the four small ops) call; csad::gpu::Primitives
// (csrc/cuda/cuda_common.h) has the same ones. Tensors are batched (csad::as_batched); scalars (tau, alpha) are 0-d tensors, read
// on the host.
struct Primitives {
  // What stays set while a composite runs: nothing on the CPU.
  struct Scope {
    explicit Scope(const at::Device&) {}
  };
  using Pairs = PairsInput;

  static void check_devices(const at::Tensor& a, const at::Tensor& b, const char* op);
  // (t's rows / max(|row|, eps), 1 / max(|row|, eps) (batch, rows)).
  static std::tuple<at::Tensor, at::Tensor> normalize_rows(const at::Tensor& t);
  static constexpr auto& normalize_backward_ = cpu::normalize_backward_;
  // softmax_rows(tau * gram); may reuse gram's storage.
  static at::Tensor softmax_rows(at::Tensor gram, const at::Tensor& tau);
  // (dL/dgram, dL/dtau) of softmax_rows from grad_e = dL/de; may reuse grad_e's storage. gram
  // undefined: dL/dtau is not computed (undefined).
  static std::tuple<at::Tensor, at::Tensor> softmax_backward(at::Tensor grad_e, const at::Tensor& e,
                                                             const at::Tensor& gram, const at::Tensor& tau);
  static constexpr auto& rwr_forward = cpu::rwr_forward;
  static constexpr auto& rwr_backward = cpu::rwr_backward;
  static constexpr auto& sce_forward = csad::sce_forward;
  static constexpr auto& sce_side_grad = cpu::sce_side_grad;
  static Pairs pairs(const PairsSpec& spec, int64_t n, const at::Device& device);
  // mi_forward / mi_backward above with the scales as 0-d tensors: Ω sees −pos·S, ¬Ω neg·S
  // (pos undefined: 1; neg undefined: pos).
  static std::tuple<at::Tensor, at::Tensor> mi_forward(const at::Tensor& scores, const at::Tensor& pos,
                                                       const at::Tensor& neg, const Pairs& pairs, Estimator estimator,
                                                       bool mean);
  static std::tuple<at::Tensor, at::Tensor> mi_backward(const at::Tensor& grad_value, const at::Tensor& scores,
                                                        const at::Tensor& pos, const at::Tensor& neg,
                                                        const at::Tensor& stats, const Pairs& pairs,
                                                        Estimator estimator);
};

}  // namespace csad::cpu
