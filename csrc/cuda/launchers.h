// Host launchers of the plain CUDA kernels of csrc/cuda/*_kernels.cu.
//
// STATUS: the .cu files behind these declarations have been compiled (nvcc 13.0, sm_80 and sm_90,
// csrc/cuda/check_compile.sh) but NOT yet run on a GPU. the cuda cases of tests/test_op_*.py are the check that
// has to pass on a GPU machine before this backend is trusted.
//
// This header includes no torch/ATen header: the .cu files compile on their own (`nvcc -c`), and
// the C++ side (csrc/cuda/*.cpp, which includes torch) calls these functions with raw device
// pointers. Every tensor is contiguous and row-major; "rows" counts the rows of all problems of a
// batch together (batch * N). Every launcher enqueues its kernels on `stream`, returns the launch
// error (cudaGetLastError) and launches nothing when there is nothing to do. Scalars that are
// learnable (tau, alpha) are passed as device pointers to one element, so no launch synchronises
// with the host. float and double are instantiated.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace csad::gpu::kernels {

// out = x / max(|x_row|, 1e-12) row-wise (F.normalize) and inv_norm[row] = 1 / max(|x_row|, 1e-12).
template <typename T>
cudaError_t normalize_rows(const T* x, T* out, T* inv_norm, int64_t rows, int64_t d, cudaStream_t stream);

// In place: grad (dL/dn for n = x * inv) becomes dL/dx = inv * (g - n <n, g>), or inv * g for rows
// whose norm was clamped at 1e-12.
template <typename T>
cudaError_t normalize_backward(T* grad, const T* normalized, const T* inv_norm, int64_t rows, int64_t d,
                               cudaStream_t stream);

// In place: s <- softmax_rows(tau * s); tau points to one element.
template <typename T>
cudaError_t softmax_rows(T* s, const T* tau, int64_t rows, int64_t n, cudaStream_t stream);

// For e = softmax_rows(tau * s): grad (dL/de) becomes dL/ds = tau * dZ in place, with
// dZ = e * (g - <g, e>_row), and tau_rows[row] = sum_j dZ_j (s_j - sum_k e_k s_k) (the centred
// dL/dtau of the row; the caller sums the rows). s == nullptr: only dL/ds (tau_rows is not written).
template <typename T>
cudaError_t softmax_backward(T* grad, const T* e, const T* s, const T* tau, T* tau_rows, int64_t rows, int64_t n,
                             cudaStream_t stream);

// In place: each row of w divided by its sum; row_sums[row] = that sum (RWR renormalisation).
template <typename T>
cudaError_t rwr_normalize_rows(T* w, T* row_sums, int64_t rows, int64_t n, cudaStream_t stream);

// In place, for R = W / rowsum(W): grad (dL/dR) becomes dL/dW = (g - <g, R>_row) / rowsum(W).
template <typename T>
cudaError_t rwr_normalize_backward(T* grad, const T* r, const T* row_sums, int64_t rows, int64_t n,
                                   cudaStream_t stream);

// In place, elementwise over `count` entries: grad <- p >= smallest normal ? grad / p : 0 (the
// gradient of log(max(p, smallest normal)) times grad, as in the symmetric cross-entropy).
template <typename T>
cudaError_t sce_divide(T* grad, const T* p, int64_t count, cudaStream_t stream);

// Ω of a batch, read on the device: labels (batch, n, k) int64 with a tolerance
// ((i, j) ∈ Ω ⇔ max_q |l_iq − l_jq| ≤ tolerance), or a bool mask (batch, n, n). Exactly one of
// labels and mask is non-null. groups (batch, n) int64, optional: only pairs (i, j) with
// groups[i] == groups[j] count, on both sides.
struct PairsView {
  const int64_t* labels = nullptr;
  const bool* mask = nullptr;
  const int64_t* groups = nullptr;
  int64_t n = 0, k = 0, tolerance = 0;
};

// The estimators of DESIGN.md §2 (csad::Estimator on the C++ side).
enum class Loss : int { kCs = 0, kJsd = 1, kMs = 2 };

// Stats per problem (float64), as kStats in csrc/shared.h.
constexpr int kStatsPerProblem = 8;

// I per problem from scores S (batch, n, n). Side Ω sees x = −pos·S, side ¬Ω x = neg·S, with pos
// and neg device pointers to one element (pos == nullptr: 1; neg == nullptr: pos): alpha for cs/jsd,
// w₊/w₋ for ms, where each side's term is also divided by its scale. value (batch,) is written;
// stats (batch, kStatsPerProblem, float64) must be zero on entry and receives, per side s (Ω then
// ¬Ω), stats[2s], stats[2s + 1] = (max x, sigmoid(level)) for cs/ms and (0, weight) for jsd,
// stats[4 + s] = softplus(level) and stats[6 + s] = log Σ exp(x − max) for cs/ms, where level is the
// side's log-sum-exp (max + stats[6 + s]) minus log(count) for reduction "mean" (the lse for "sum");
// an empty side keeps zeros and contributes 0. Pairs outside
// the groups are skipped. Workspace: row_partials (batch * n, 4) and row_counts (batch * n, 2).
template <typename T>
cudaError_t mi_forward(const T* scores, const T* pos, const T* neg, PairsView pairs, Loss loss, bool mean,
                       int64_t batch, T* row_partials, long long* row_counts, T* value, double* stats,
                       cudaStream_t stream);

// grad_scores (batch, n, n) = grad_value[b] · dI/dS (0 outside the groups) and side_rows
// (batch * n, 2, float64) = per side the row sums of D·S, D = grad_value[b] · dI/dM as cs/jsd define it with
// M = scale·S (for ms, D = dI/dS); cs/jsd: their total is dI/dalpha; ms: see ms_scale_grads.
template <typename T>
cudaError_t mi_backward(const T* grad_value, const T* scores, const T* pos, const T* neg, const double* stats,
                        PairsView pairs, Loss loss, int64_t batch, T* grad_scores, double* side_rows,
                        cudaStream_t stream);

}  // namespace csad::gpu::kernels
