// Row-wise CUDA kernels of the csad ops, mirroring csrc/cpu/common.cpp: row normalisation and its
// backward, the row softmax of tau * s and its backward (centred tau gradient), the RWR row
// renormalisation and its backward, and the clamped-log gradient division of the symmetric
// cross-entropy backward.
//
// STATUS: compiled with nvcc 13.0 for sm_80 and sm_90 (csrc/cuda/check_compile.sh), but NOT yet
// run on a GPU: the cuda cases of tests/test_op_*.py and tests/test_cuda_backend.py have to pass on a GPU machine before this is trusted.
//
// Plain CUDA (no torch/ATen headers): `nvcc -std=c++17 -c row_kernels.cu` works on its own.
// One thread block per row (grid-stride over rows), threads stride over the row's columns; block
// reductions in shared memory. Every access is bounds-checked by the column loop.
#include <cfloat>

#include "device_utils.cuh"
#include "launchers.h"

namespace csad::gpu::kernels {
namespace {

using detail::block_max;
using detail::block_sum;
using detail::dev_exp;
using detail::dev_max;
using detail::dev_sqrt;

constexpr double kNormEps = 1e-12;

template <typename T>
__device__ __forceinline__ T smallest_normal();
template <>
__device__ __forceinline__ float smallest_normal<float>() {
  return FLT_MIN;
}
template <>
__device__ __forceinline__ double smallest_normal<double>() {
  return DBL_MIN;
}

// Σ_j a[j] b[j] over one row of n, reduced over the block: every thread gets it.
template <typename T>
__device__ __forceinline__ T row_dot(const T* a, const T* b, int64_t n) {
  T dot = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dot += a[j] * b[j];
  return block_sum(dot);
}

template <typename T>
__global__ void normalize_rows_kernel(const T* __restrict__ x, T* __restrict__ out, T* __restrict__ inv_norm,
                                      int64_t rows, int64_t d) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * d;
    T squares = 0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) squares += row[k] * row[k];
    squares = block_sum(squares);
    const T inv = T(1) / dev_max(dev_sqrt(squares), T(kNormEps));
    if (threadIdx.x == 0) inv_norm[r] = inv;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) out[r * d + k] = row[k] * inv;
  }
}

template <typename T>
__global__ void normalize_backward_kernel(T* __restrict__ grad, const T* __restrict__ normalized,
                                          const T* __restrict__ inv_norm, int64_t rows, int64_t d) {
  const T clamped = T(1) / T(kNormEps);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* g = grad + r * d;
    const T* n = normalized + r * d;
    const T inv = inv_norm[r];
    T dot = row_dot(n, g, d);  // every thread reduces, whatever the row's clamp (block-uniform anyway)
    if (!(inv < clamped)) dot = T(0);
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) g[k] = inv * (g[k] - n[k] * dot);
  }
}

template <typename T>
__global__ void softmax_rows_kernel(T* __restrict__ s, const T* __restrict__ tau_ptr, int64_t rows, int64_t n) {
  const T tau = *tau_ptr;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = s + r * n;
    T top = detail::negative_infinity<T>();
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) top = dev_max(top, tau * row[j]);
    top = block_max(top);
    T total = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T value = dev_exp(tau * row[j] - top);
      row[j] = value;
      total += value;
    }
    total = block_sum(total);
    const T inv = T(1) / total;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
  }
}

template <typename T>
__global__ void softmax_backward_kernel(T* __restrict__ grad, const T* __restrict__ e, const T* __restrict__ s,
                                        const T* __restrict__ tau_ptr, T* __restrict__ tau_rows, int64_t rows,
                                        int64_t n) {
  const T tau = *tau_ptr;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* g = grad + r * n;
    const T* erow = e + r * n;
    const T dot = row_dot(g, erow, n);
    if (s == nullptr) {  // block-uniform
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) g[j] = tau * (erow[j] * (g[j] - dot));
      continue;
    }
    const T* srow = s + r * n;
    const T mean_s = row_dot(srow, erow, n);
    T tau_sum = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T dz = erow[j] * (g[j] - dot);
      tau_sum += dz * (srow[j] - mean_s);
      g[j] = tau * dz;
    }
    tau_sum = block_sum(tau_sum);
    if (threadIdx.x == 0) tau_rows[r] = tau_sum;
  }
}

template <typename T>
__global__ void rwr_normalize_rows_kernel(T* __restrict__ w, T* __restrict__ row_sums, int64_t rows, int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = w + r * n;
    T total = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) total += row[j];
    total = block_sum(total);
    if (threadIdx.x == 0) row_sums[r] = total;
    const T inv = T(1) / total;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
  }
}

template <typename T>
__global__ void rwr_normalize_backward_kernel(T* __restrict__ grad, const T* __restrict__ r_data,
                                              const T* __restrict__ row_sums, int64_t rows, int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* g = grad + r * n;
    const T* rrow = r_data + r * n;
    const T dot = row_dot(g, rrow, n);
    const T inv = T(1) / row_sums[r];
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) g[j] = (g[j] - dot) * inv;
  }
}

template <typename T>
__global__ void sce_divide_kernel(T* __restrict__ grad, const T* __restrict__ p, int64_t count) {
  const T tiny = smallest_normal<T>();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const T pi = p[i];
    grad[i] = pi >= tiny ? grad[i] / pi : T(0);
  }
}

// Launches kernel over `rows` rows of `cols` columns (one block per row), nothing when there is nothing to do.
template <typename... Params, typename... Args>
cudaError_t launch_rows(void (*kernel)(Params...), int64_t rows, int64_t cols, cudaStream_t stream, Args... args) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  kernel<<<detail::row_blocks(rows), detail::row_threads(cols), 0, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t normalize_rows(const T* x, T* out, T* inv_norm, int64_t rows, int64_t d, cudaStream_t stream) {
  return launch_rows(normalize_rows_kernel<T>, rows, d, stream, x, out, inv_norm, rows, d);
}

template <typename T>
cudaError_t normalize_backward(T* grad, const T* normalized, const T* inv_norm, int64_t rows, int64_t d,
                               cudaStream_t stream) {
  return launch_rows(normalize_backward_kernel<T>, rows, d, stream, grad, normalized, inv_norm, rows, d);
}

template <typename T>
cudaError_t softmax_rows(T* s, const T* tau, int64_t rows, int64_t n, cudaStream_t stream) {
  return launch_rows(softmax_rows_kernel<T>, rows, n, stream, s, tau, rows, n);
}

template <typename T>
cudaError_t softmax_backward(T* grad, const T* e, const T* s, const T* tau, T* tau_rows, int64_t rows, int64_t n,
                             cudaStream_t stream) {
  return launch_rows(softmax_backward_kernel<T>, rows, n, stream, grad, e, s, tau, tau_rows, rows, n);
}

template <typename T>
cudaError_t rwr_normalize_rows(T* w, T* row_sums, int64_t rows, int64_t n, cudaStream_t stream) {
  return launch_rows(rwr_normalize_rows_kernel<T>, rows, n, stream, w, row_sums, rows, n);
}

template <typename T>
cudaError_t rwr_normalize_backward(T* grad, const T* r, const T* row_sums, int64_t rows, int64_t n,
                                   cudaStream_t stream) {
  return launch_rows(rwr_normalize_backward_kernel<T>, rows, n, stream, grad, r, row_sums, rows, n);
}

template <typename T>
cudaError_t sce_divide(T* grad, const T* p, int64_t count, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  constexpr int threads = 256;
  const int64_t wanted = (count + threads - 1) / threads;
  const unsigned int blocks = static_cast<unsigned int>(wanted < detail::kMaxBlocks ? wanted : detail::kMaxBlocks);
  sce_divide_kernel<T><<<blocks, threads, 0, stream>>>(grad, p, count);
  return cudaGetLastError();
}

#define CSAD_INSTANTIATE_ROW_LAUNCHERS(T)                                                                          \
  template cudaError_t normalize_rows<T>(const T*, T*, T*, int64_t, int64_t, cudaStream_t);                       \
  template cudaError_t normalize_backward<T>(T*, const T*, const T*, int64_t, int64_t, cudaStream_t);             \
  template cudaError_t softmax_rows<T>(T*, const T*, int64_t, int64_t, cudaStream_t);                             \
  template cudaError_t softmax_backward<T>(T*, const T*, const T*, const T*, T*, int64_t, int64_t, cudaStream_t); \
  template cudaError_t rwr_normalize_rows<T>(T*, T*, int64_t, int64_t, cudaStream_t);                             \
  template cudaError_t rwr_normalize_backward<T>(T*, const T*, const T*, int64_t, int64_t, cudaStream_t);         \
  template cudaError_t sce_divide<T>(T*, const T*, int64_t, cudaStream_t);

CSAD_INSTANTIATE_ROW_LAUNCHERS(float)
CSAD_INSTANTIATE_ROW_LAUNCHERS(double)

#undef CSAD_INSTANTIATE_ROW_LAUNCHERS

}  // namespace csad::gpu::kernels
