// CUDA kernels of the masked cross-sample MI loss (DESIGN.md §2), mirroring mi_forward and
// mi_backward of csrc/cpu/common.cpp.
//
// STATUS: compiled with nvcc 13.0 for sm_80 and sm_90 (csrc/cuda/check_compile.sh), but NOT yet
// run on a GPU: tests/test_cuda_ops.py has to pass on a GPU machine before this is trusted.
//
// Plain CUDA (no torch/ATen headers): `nvcc -std=c++17 -c mi_kernels.cu` works on its own.
//
// Forward, for M = alpha * S and the two sides of the pairs (Ω: x = −M, ¬Ω: x = M):
//   1. one block per score row: per side the count and, for "cs", the max x and Σ exp(x − max)
//      (two passes over the row), for "jsd" Σ softplus(x);
//   2. one block per problem: the rows' partials combined. cs: lse = log Σ_rows total·e^(top−max)
//      + max, level = lse − log(count) ("mean") or lse ("sum"), I −= softplus(level); jsd:
//      I −= weight · Σ softplus with weight 1/count or 1. An empty side contributes 0 and keeps
//      its stats 0, so its gradient is 0.
// Ω comes from labels (batch, N, K) + tolerance, evaluated per pair, or from a bool mask; no N×N
// mask is built.
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

// row_partials[r * 4 + 2 * side + {0, 1}] = (max x, Σ exp(x − max x)) for cs, (0, Σ softplus(x))
// for jsd; row_counts[r * 2 + side] = the side's number of pairs in row r. Side 0 is Ω, 1 is ¬Ω.
template <typename T>
__global__ void mi_rows_kernel(const T* __restrict__ scores, const T* __restrict__ alpha_ptr, PairsView pairs,
                               bool cs, int64_t rows, T* __restrict__ row_partials,
                               long long* __restrict__ row_counts) {
  const T a = alpha_ptr != nullptr ? *alpha_ptr : T(1);
  const int64_t n = pairs.n;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / n, i = r % n;
    const T* row = scores + r * n;
    long long count_in = 0, count_out = 0;
    T top_in = 0, top_out = 0, total_in = 0, total_out = 0;
    if (cs) {
      top_in = negative_infinity<T>();
      top_out = negative_infinity<T>();
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        if (in_pairs(pairs, b, i, j)) {
          top_in = dev_max(top_in, -a * row[j]);
          ++count_in;
        } else {
          top_out = dev_max(top_out, a * row[j]);
          ++count_out;
        }
      }
      top_in = block_max(top_in);
      top_out = block_max(top_out);
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        // A side with no pair in this row has top = −inf and adds nothing here.
        if (in_pairs(pairs, b, i, j)) {
          total_in += dev_exp(-a * row[j] - top_in);
        } else {
          total_out += dev_exp(a * row[j] - top_out);
        }
      }
    } else {
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        if (in_pairs(pairs, b, i, j)) {
          total_in += softplus(-a * row[j]);
          ++count_in;
        } else {
          total_out += softplus(a * row[j]);
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
                                  int64_t batch, int64_t n, bool cs, bool mean, T* __restrict__ value,
                                  double* __restrict__ stats) {
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    double total_value = 0;
    for (int side = 0; side < 2; ++side) {
      long long count = 0;
      T top = negative_infinity<T>();
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t r = b * n + i;
        const long long row_count = row_counts[r * 2 + side];
        count += row_count;
        if (cs && row_count > 0) top = dev_max(top, row_partials[r * 4 + 2 * side]);
      }
      count = block_sum(count);
      if (cs) top = block_max(top);
      // The combination runs in double: the log-sum-exp can be large, and the backward subtracts
      // it from every score of its side, so its float rounding would shift all those weights alike.
      double sum = 0;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t r = b * n + i;
        if (row_counts[r * 2 + side] == 0) continue;
        const double partial = row_partials[r * 4 + 2 * side + 1];
        sum += cs ? partial * dev_exp(static_cast<double>(row_partials[r * 4 + 2 * side]) - top) : partial;
      }
      sum = block_sum(sum);
      if (threadIdx.x == 0 && count > 0) {
        if (cs) {
          const double lse = dev_log(sum) + top;
          const double level = mean ? lse - dev_log(static_cast<double>(count)) : lse;
          total_value -= softplus(level);
          stats[b * 4 + 2 * side] = lse;
          stats[b * 4 + 2 * side + 1] = sigmoid(level);
        } else {
          const double weight = mean ? 1.0 / static_cast<double>(count) : 1.0;
          total_value -= sum * weight;
          stats[b * 4 + 2 * side + 1] = weight;
        }
      }
    }
    if (threadIdx.x == 0) value[b] = static_cast<T>(total_value);
  }
}

template <typename T>
__global__ void mi_backward_kernel(const T* __restrict__ grad_value, const T* __restrict__ scores,
                                   const T* __restrict__ alpha_ptr, const double* __restrict__ stats, PairsView pairs,
                                   bool cs, int64_t rows, T* __restrict__ grad_scores, T* __restrict__ alpha_rows) {
  const T a = alpha_ptr != nullptr ? *alpha_ptr : T(1);
  const int64_t n = pairs.n;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / n, i = r % n;
    const T* row = scores + r * n;
    T* out = grad_scores + r * n;
    const double* s = stats + b * 4;
    const T gv = grad_value[b];
    T alpha_sum = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T m = a * row[j];
      T d;  // dI/dM; a side's stats are only read for pairs of that side, so never for an empty one
      if (in_pairs(pairs, b, i, j)) {
        d = cs ? static_cast<T>(s[1]) * dev_exp(static_cast<T>(-static_cast<double>(m) - s[0]))
               : static_cast<T>(s[1]) * sigmoid(-m);
      } else {
        d = cs ? -static_cast<T>(s[3]) * dev_exp(static_cast<T>(static_cast<double>(m) - s[2]))
               : -static_cast<T>(s[3]) * sigmoid(m);
      }
      d *= gv;
      alpha_sum += d * row[j];
      out[j] = a * d;
    }
    alpha_sum = block_sum(alpha_sum);
    if (threadIdx.x == 0) alpha_rows[r] = alpha_sum;
  }
}

}  // namespace

template <typename T>
cudaError_t mi_forward(const T* scores, const T* alpha, PairsView pairs, bool cs, bool mean, int64_t batch,
                       T* row_partials, long long* row_counts, T* value, double* stats, cudaStream_t stream) {
  if (batch <= 0) return cudaSuccess;
  const int64_t rows = batch * pairs.n;
  if (rows > 0) {
    mi_rows_kernel<T><<<detail::row_blocks(rows), detail::row_threads(pairs.n), 0, stream>>>(
        scores, alpha, pairs, cs, rows, row_partials, row_counts);
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
  }
  mi_combine_kernel<T><<<detail::row_blocks(batch), detail::row_threads(pairs.n), 0, stream>>>(
      row_partials, row_counts, batch, pairs.n, cs, mean, value, stats);
  return cudaGetLastError();
}

template <typename T>
cudaError_t mi_backward(const T* grad_value, const T* scores, const T* alpha, const double* stats, PairsView pairs,
                        bool cs, int64_t batch, T* grad_scores, T* alpha_rows, cudaStream_t stream) {
  const int64_t rows = batch * pairs.n;
  if (rows <= 0) return cudaSuccess;
  mi_backward_kernel<T><<<detail::row_blocks(rows), detail::row_threads(pairs.n), 0, stream>>>(
      grad_value, scores, alpha, stats, pairs, cs, rows, grad_scores, alpha_rows);
  return cudaGetLastError();
}

#define CSAD_INSTANTIATE_MI_LAUNCHERS(T)                                                                             \
  template cudaError_t mi_forward<T>(const T*, const T*, PairsView, bool, bool, int64_t, T*, long long*, T*,       \
                                     double*, cudaStream_t);                                                         \
  template cudaError_t mi_backward<T>(const T*, const T*, const T*, const double*, PairsView, bool, int64_t, T*, T*, \
                                      cudaStream_t);

CSAD_INSTANTIATE_MI_LAUNCHERS(float)
CSAD_INSTANTIATE_MI_LAUNCHERS(double)

#undef CSAD_INSTANTIATE_MI_LAUNCHERS

}  // namespace csad::gpu::kernels
