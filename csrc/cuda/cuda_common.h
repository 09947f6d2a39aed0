// Building blocks of the CUDA backend, the counterpart of csrc/cpu/common.h: every function works
// on batched, contiguous (batch, rows, cols) CUDA tensors in the compute dtype (float32, or
// float64), runs its row loops with the plain CUDA kernels of csrc/cuda/*_kernels.cu on the current
// stream, and leaves the N^3 parts to cuBLAS/cuSOLVER through ATen (at::bmm, at::baddbmm,
// at::linalg_inv_ex).
//
// STATUS: written to mirror csrc/cpu/ exactly, syntax-checked against torch's headers on a
// machine without a CUDA build of torch, but NOT yet compiled into the extension nor run on a GPU.
//
// Learnable scalars (tau, alpha) stay on the device (no .item(), so no host synchronisation); the
// kernels read them in the compute dtype.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include <string>
#include <tuple>

#include "../shared.h"
#include "fp32_gemm_guard.h"
#include "launchers.h"

namespace csad::gpu {

// A 0-d scalar tensor as a contiguous one-element tensor on like's device in like's dtype.
at::Tensor device_scalar(const at::Tensor& scalar, const at::Tensor& like);

// (t's rows scaled by 1 / max(|row|, eps), 1 / max(|row|, eps) (batch, rows)): F.normalize.
std::tuple<at::Tensor, at::Tensor> normalize_rows(const at::Tensor& t);

// Turns grad w.r.t. normalised rows into grad w.r.t. the raw rows, in place (see common.h).
void normalize_backward_(at::Tensor& grad, const at::Tensor& normalized, const at::Tensor& inv_norm);

// In place: s <- softmax_rows(tau * s); tau is a device scalar in s's dtype (device_scalar).
void softmax_rows_(at::Tensor& s, const at::Tensor& tau);

// For e = softmax_rows(tau * s): turns grad = dL/de into dL/ds in place and returns dL/dtau (0-d),
// the centred form sum_ij dZ_ij (s_ij - sum_k e_ik s_ik) with dZ = e * (g - <g, e>_row); s undefined:
// dL/dtau is not computed (undefined).
at::Tensor softmax_backward_(at::Tensor& grad, const at::Tensor& e, const at::Tensor& s, const at::Tensor& tau);

// Random Walk with Restart: (R, row sums of W = (I - cE)^-1), W by at::linalg_inv_ex.
std::tuple<at::Tensor, at::Tensor> rwr_forward(const at::Tensor& e, double c);

// dL/dE from dL/dR (consumed). dL/dE = c W^T (dL/dW) W^T.
at::Tensor rwr_backward(at::Tensor grad_r, const at::Tensor& r, const at::Tensor& w_row_sums, double c);

// dL/dp of sce_forward(p, q) from grad = dL/dS (batch, N, M); dL/dq is sce_side_grad(grad^T, q, p).
at::Tensor sce_side_grad(const at::Tensor& grad, const at::Tensor& p, const at::Tensor& q);

// Keeps contiguous device copies of the Ω and groups inputs alive and exposes them to the kernels.
struct PairsInput {
  at::Tensor labels, mask, groups;
  kernels::PairsView view;
  PairsInput(const c10::optional<at::Tensor>& labels, const c10::optional<at::Tensor>& mask, int64_t n,
             int64_t tolerance, const at::Device& device, const c10::optional<at::Tensor>& groups = c10::nullopt);
};

// The two sides' scales as device scalars (see csrc/cpu/common.h, Scales): Ω sees x = −pos·S,
// ¬Ω x = neg·S. Undefined pos means 1, undefined neg means pos. cs/jsd: pos = alpha (or 1), neg
// undefined; ms: pos = w₊, neg = w₋.
struct Scales {
  at::Tensor pos, neg;
};

// I per problem from scores S (batch, N, N). Returns (value (batch,), stats (batch, kStats)), stats as
// in csrc/shared.h.
std::tuple<at::Tensor, at::Tensor> mi_forward(const at::Tensor& scores, const Scales& scales,
                                              const kernels::PairsView& pairs, Estimator estimator, bool mean);

// (grad_value · dI/dS (batch, N, N), side_sums (batch, 2) float64) as mi_backward of csrc/cpu/common.h.
std::tuple<at::Tensor, at::Tensor> mi_backward(const at::Tensor& grad_value, const at::Tensor& scores,
                                               const Scales& scales, const at::Tensor& stats,
                                               const kernels::PairsView& pairs, Estimator estimator);

// The ops' steps on CUDA, with the members and signatures of csad::cpu::Primitives
// (csrc/cpu/common.h), which the composites of csrc/*.cpp call. Scalars (tau,
// alpha) stay on the device.
struct Primitives {
  // While a composite runs: the inputs' device is current and GEMMs are full float32 (no TF32).
  struct Scope {
    explicit Scope(const at::Device& device) : device_guard(device) {}
    c10::cuda::OptionalCUDAGuard device_guard;
    Fp32GemmGuard fp32_gemms;
  };
  using Pairs = PairsInput;

  static void check_devices(const at::Tensor& a, const at::Tensor& b, const char* op);
  static constexpr auto& normalize_rows = gpu::normalize_rows;
  static constexpr auto& normalize_backward_ = gpu::normalize_backward_;
  static at::Tensor softmax_rows(at::Tensor gram, const at::Tensor& tau);
  static std::tuple<at::Tensor, at::Tensor> softmax_backward(at::Tensor grad_e, const at::Tensor& e,
                                                             const at::Tensor& gram, const at::Tensor& tau);
  static constexpr auto& rwr_forward = gpu::rwr_forward;
  static constexpr auto& rwr_backward = gpu::rwr_backward;
  static constexpr auto& sce_forward = csad::sce_forward;
  static constexpr auto& sce_side_grad = gpu::sce_side_grad;
  static Pairs pairs(const PairsSpec& spec, int64_t n, const at::Device& device);
  static std::tuple<at::Tensor, at::Tensor> mi_forward(const at::Tensor& scores, const at::Tensor& pos,
                                                       const at::Tensor& neg, const Pairs& pairs, Estimator estimator,
                                                       bool mean);
  static std::tuple<at::Tensor, at::Tensor> mi_backward(const at::Tensor& grad_value, const at::Tensor& scores,
                                                        const at::Tensor& pos, const at::Tensor& neg,
                                                        const at::Tensor& stats, const Pairs& pairs,
                                                        Estimator estimator);
};

}  // namespace csad::gpu
