// CUDA kernels of the masked cross-sample MI loss (DESIGN.md §2), mirroring mi_forward and
// mi_backward of csrc/cpu/common.cpp.
//
// STATUS: compiled with nvcc for sm_80 and sm_90 (csrc/cuda/check_compile.sh), but NOT yet run on
// a GPU: the cuda cases of tests/test_op_*.py and tests/test_cuda_backend.py have to pass on a GPU machine
// before this is trusted.
//
// Plain CUDA (no torch/ATen headers): `nvcc -std=c++17 -c mi_kernels.cu` works on its own.
//
// Forward, for the two sides of the pairs (Ω: x = −pos·S, ¬Ω: x = neg·S; cs/jsd: pos = neg = alpha,
// ms: w₊, w₋):
//   1. one block per score row: per side the count and, for cs/ms, the max x and Σ exp(x − max)
//      (two passes over the row), for jsd Σ softplus(x);
//   2. one block per problem: the rows' partials combined. cs/ms: lse = log Σ_rows total·e^(top−max)
//      + max (the stats keep max and the log apart, csrc/shared.h kStats), level = lse − log(count) ("mean") or lse ("sum"), I −= softplus(level) (ms: divided by
//      the side's scale); jsd: I −= weight · Σ softplus with weight 1/count or 1. An empty side
//      contributes 0 and keeps its stats 0, so its gradient is 0.
// Ω comes from labels (batch, N, K) + tolerance, evaluated per pair, or from a bool mask; the groups
// from labels (batch, N), compared per pair; no N×N mask is built.
#include "device_utils.cuh"
#include "launchers.h"

namespace csad::gpu::kernels {
namespace {

using detail::block_max;
using detail::block_sum;
using detail::dev_exp;
using detail::dev_log;
using detail::dev_max;
using detail::negative_infinity;
using detail::sigmoid;
using detail::softplus;

__device__ __forceinline__ bool in_pairs(const PairsView& pairs, int64_t b, int64_t i, int64_t j) {
  if (pairs.mask != nullptr) return pairs.mask[(b * pairs.n + i) * pairs.n + j];
  const int64_t* li = pairs.labels + (b * pairs.n + i) * pairs.k;
  const int64_t* lj = pairs.labels + (b * pairs.n + j) * pairs.k;
  for (int64_t q = 0; q < pairs.k; ++q) {
    const int64_t diff = li[q] > lj[q] ? li[q] - lj[q] : lj[q] - li[q];
    if (diff > pairs.tolerance) return false;
  }
  return true;
}

// (i, j) counts at all: same group, or no groups given.
__device__ __forceinline__ bool counted(const PairsView& pairs, int64_t b, int64_t i, int64_t j) {
  return pairs.groups == nullptr || pairs.groups[b * pairs.n + i] == pairs.groups[b * pairs.n + j];
}

template <typename T>
__device__ __forceinline__ T scale_in(const T* pos) {
  return pos != nullptr ? *pos : T(1);
}

template <typename T>
__device__ __forceinline__ T scale_out(const T* pos, const T* neg) {
  return neg != nullptr ? *neg : scale_in(pos);
}

// row_partials[r * 4 + 2 * side + {0, 1}] = (max x, Σ exp(x − max x)) for cs/ms, (0, Σ softplus(x))
// for jsd; row_counts[r * 2 + side] = the side's number of counted pairs in row r. Side 0 is Ω, 1 is ¬Ω.
template <typename T>
__global__ void mi_rows_kernel(const T* __restrict__ scores, const T* __restrict__ pos_ptr,
                               const T* __restrict__ neg_ptr, PairsView pairs, bool lse_form, int64_t rows,
                               T* __restrict__ row_partials, long long* __restrict__ row_counts) {
  const T a_in = scale_in(pos_ptr), a_out = scale_out(pos_ptr, neg_ptr);
  const int64_t n = pairs.n;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / n, i = r % n;
    const T* row = scores + r * n;
    long long count_in = 0, count_out = 0;
    T top_in = 0, top_out = 0, total_in = 0, total_out = 0;
    if (lse_form) {
      top_in = negative_infinity<T>();
      top_out = negative_infinity<T>();
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        if (!counted(pairs, b, i, j)) continue;
        if (in_pairs(pairs, b, i, j)) {
          top_in = dev_max(top_in, -a_in * row[j]);
          ++count_in;
        } else {
          top_out = dev_max(top_out, a_out * row[j]);
          ++count_out;
        }
      }
      top_in = block_max(top_in);
      top_out = block_max(top_out);
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        // A side with no pair in this row has top = −inf and adds nothing here.
        if (!counted(pairs, b, i, j)) continue;
        if (in_pairs(pairs, b, i, j)) {
          total_in += dev_exp(-a_in * row[j] - top_in);
        } else {
          total_out += dev_exp(a_out * row[j] - top_out);
        }
      }
    } else {
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        if (!counted(pairs, b, i, j)) continue;
        if (in_pairs(pairs, b, i, j)) {
          total_in += softplus(-a_in * row[j]);
          ++count_in;
        } else {
          total_out += softplus(a_out * row[j]);
          ++count_out;
        }
      }
    }
    total_in = block_sum(total_in);
    total_out = block_sum(total_out);
    count_in = block_sum(count_in);
    count_out = block_sum(count_out);
    if (threadIdx.x == 0) {
      T* partials = row_partials + r * 4;
      partials[0] = top_in;
      partials[1] = total_in;
      partials[2] = top_out;
      partials[3] = total_out;
      row_counts[r * 2] = count_in;
      row_counts[r * 2 + 1] = count_out;
    }
  }
}

// One block per problem: combines the rows' partials into I and the backward's stats.
template <typename T>
__global__ void mi_combine_kernel(const T* __restrict__ row_partials, const long long* __restrict__ row_counts,
                                  const T* __restrict__ pos_ptr, const T* __restrict__ neg_ptr, int64_t batch,
                                  int64_t n, Loss loss, bool mean, T* __restrict__ value, double* __restrict__ stats) {
  const bool lse_form = loss != Loss::kJsd;
  // ms divides each side's term by its scale; cs and jsd do not.
  const double divisors[2] = {loss == Loss::kMs ? static_cast<double>(scale_in(pos_ptr)) : 1.0,
                              loss == Loss::kMs ? static_cast<double>(scale_out(pos_ptr, neg_ptr)) : 1.0};
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    double total_value = 0;
    double* st = stats + b * kStatsPerProblem;
    for (int side = 0; side < 2; ++side) {
      long long count = 0;
      T top = negative_infinity<T>();
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t r = b * n + i;
        const long long row_count = row_counts[r * 2 + side];
        count += row_count;
        if (lse_form && row_count > 0) top = dev_max(top, row_partials[r * 4 + 2 * side]);
      }
      count = block_sum(count);
      if (lse_form) top = block_max(top);
      // The combination runs in double: the backward subtracts log(sum) from every score of its
      // side (after the max), so its float rounding would shift all those weights alike.
      double sum = 0;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t r = b * n + i;
        if (row_counts[r * 2 + side] == 0) continue;
        const double partial = row_partials[r * 4 + 2 * side + 1];
        sum += lse_form ? partial * dev_exp(static_cast<double>(row_partials[r * 4 + 2 * side]) - top) : partial;
      }
      sum = block_sum(sum);
      if (threadIdx.x == 0 && count > 0) {
        if (lse_form) {
          const double log_sum = dev_log(sum);
          const double lse = log_sum + top;
          const double level = mean ? lse - dev_log(static_cast<double>(count)) : lse;
          const double term = softplus(level);
          total_value -= term / divisors[side];
          st[2 * side] = top;
          st[2 * side + 1] = sigmoid(level);
          st[4 + side] = term;
          st[6 + side] = log_sum;
        } else {
          const double weight = mean ? 1.0 / static_cast<double>(count) : 1.0;
          total_value -= sum * weight;
          st[2 * side + 1] = weight;
        }
      }
    }
    if (threadIdx.x == 0) value[b] = static_cast<T>(total_value);
  }
}

template <typename T>
__global__ void mi_backward_kernel(const T* __restrict__ grad_value, const T* __restrict__ scores,
                                   const T* __restrict__ pos_ptr, const T* __restrict__ neg_ptr,
                                   const double* __restrict__ stats, PairsView pairs, Loss loss, int64_t rows,
                                   T* __restrict__ grad_scores, double* __restrict__ side_rows) {
  const T a_in = scale_in(pos_ptr), a_out = scale_out(pos_ptr, neg_ptr);
  const bool lse_form = loss != Loss::kJsd;
  // dI/dS = alpha · D for cs/jsd (M = alpha·S); ms: D itself (its 1/w cancels the chain rule's w)
  const T out_scale = loss == Loss::kMs ? T(1) : a_in;
  const int64_t n = pairs.n;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / n, i = r % n;
    const T* row = scores + r * n;
    T* out = grad_scores + r * n;
    const double* s = stats + b * kStatsPerProblem;
    const T gv = grad_value[b];
    double sum_in = 0, sum_out = 0;  // in double, as on the CPU: ms' scale gradients subtract them
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      if (!counted(pairs, b, i, j)) {
        out[j] = T(0);
        continue;
      }
      T d;  // D; a side's stats are only read for pairs of that side, so never for an empty one
      if (in_pairs(pairs, b, i, j)) {
        const T m = a_in * row[j];
        d = lse_form ? static_cast<T>(s[1]) * dev_exp(static_cast<T>((-static_cast<double>(m) - s[0]) - s[6]))
                     : static_cast<T>(s[1]) * sigmoid(-m);
        d *= gv;
        sum_in += static_cast<double>(d) * row[j];
      } else {
        const T m = a_out * row[j];
        d = lse_form ? -static_cast<T>(s[3]) * dev_exp(static_cast<T>((static_cast<double>(m) - s[2]) - s[7]))
                     : -static_cast<T>(s[3]) * sigmoid(m);
        d *= gv;
        sum_out += static_cast<double>(d) * row[j];
      }
      out[j] = out_scale * d;
    }
    sum_in = block_sum(sum_in);
    sum_out = block_sum(sum_out);
    if (threadIdx.x == 0) {
      side_rows[r * 2] = sum_in;
      side_rows[r * 2 + 1] = sum_out;
    }
  }
}

}  // namespace

template <typename T>
cudaError_t mi_forward(const T* scores, const T* pos, const T* neg, PairsView pairs, Loss loss, bool mean,
                       int64_t batch, T* row_partials, long long* row_counts, T* value, double* stats,
                       cudaStream_t stream) {
  if (batch <= 0) return cudaSuccess;
  const int64_t rows = batch * pairs.n;
  if (rows > 0) {
    mi_rows_kernel<T><<<detail::row_blocks(rows), detail::row_threads(pairs.n), 0, stream>>>(
        scores, pos, neg, pairs, loss != Loss::kJsd, rows, row_partials, row_counts);
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
  }
  mi_combine_kernel<T><<<detail::row_blocks(batch), detail::row_threads(pairs.n), 0, stream>>>(
      row_partials, row_counts, pos, neg, batch, pairs.n, loss, mean, value, stats);
  return cudaGetLastError();
}

template <typename T>
cudaError_t mi_backward(const T* grad_value, const T* scores, const T* pos, const T* neg, const double* stats,
                        PairsView pairs, Loss loss, int64_t batch, T* grad_scores, double* side_rows,
                        cudaStream_t stream) {
  const int64_t rows = batch * pairs.n;
  if (rows <= 0) return cudaSuccess;
  mi_backward_kernel<T><<<detail::row_blocks(rows), detail::row_threads(pairs.n), 0, stream>>>(
      grad_value, scores, pos, neg, stats, pairs, loss, rows, grad_scores, side_rows);
  return cudaGetLastError();
}

#define CSAD_INSTANTIATE_MI_LAUNCHERS(T)                                                                          \
  template cudaError_t mi_forward<T>(const T*, const T*, const T*, PairsView, Loss, bool, int64_t, T*, long long*, \
                                     T*, double*, cudaStream_t);                                                  \
  template cudaError_t mi_backward<T>(const T*, const T*, const T*, const T*, const double*, PairsView, Loss,     \
                                      int64_t, T*, double*, cudaStream_t);

CSAD_INSTANTIATE_MI_LAUNCHERS(float)
CSAD_INSTANTIATE_MI_LAUNCHERS(double)

#undef CSAD_INSTANTIATE_MI_LAUNCHERS

}  // namespace csad::gpu::kernels
