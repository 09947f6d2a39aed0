// Device helpers shared by csrc/cuda/*_kernels.cu: block reductions, math overloads, launch shapes.
//
// STATUS: compiled (nvcc 13.0, sm_80/sm_90) as part of the .cu files; NOT yet run on a GPU.
//
// No torch/ATen headers: this compiles with plain nvcc. No fast-math: the math functions below are
// the accurate CUDA library ones (expf/logf/log1pf: at most 2 ulp; double versions: at most 2 ulp).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace csad::gpu::kernels::detail {

// One thread block per row; threads = the row length rounded up to a warp, at most kMaxThreads.
constexpr int kMaxThreads = 256;
// Grid size cap: kernels loop over rows with a grid stride, so any row count is covered.
constexpr int64_t kMaxBlocks = 65535;

inline int row_threads(int64_t cols) {
  int64_t threads = ((cols + 31) / 32) * 32;
  if (threads < 32) threads = 32;
  if (threads > kMaxThreads) threads = kMaxThreads;
  return static_cast<int>(threads);
}

inline unsigned int row_blocks(int64_t rows) {
  return static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
}

// Overloads so that templates pick the float or double library function explicitly.
__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }
__device__ __forceinline__ float dev_log(float x) { return logf(x); }
__device__ __forceinline__ double dev_log(double x) { return log(x); }
__device__ __forceinline__ float dev_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double dev_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float dev_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double dev_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float dev_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double dev_abs(double x) { return fabs(x); }

template <typename T>
__device__ __forceinline__ T dev_max(T a, T b) {
  return a > b ? a : b;
}

template <typename T>
__device__ __forceinline__ T negative_infinity() {
  return static_cast<T>(-INFINITY);
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)), as csrc/cpu/common.cpp.
template <typename T>
__device__ __forceinline__ T softplus(T x) {
  return dev_max(x, T(0)) + dev_log1p(dev_exp(-dev_abs(x)));
}

template <typename T>
__device__ __forceinline__ T sigmoid(T x) {
  return x >= T(0) ? T(1) / (T(1) + dev_exp(-x)) : dev_exp(x) / (T(1) + dev_exp(x));
}

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};

struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

// Reduces x over the whole block and returns the result to every thread. Every thread of the
// block must call it (it synchronises); blockDim.x must be a multiple of 32, at most 1024.
template <typename T, typename Op>
__device__ T block_reduce(T x, Op op, T identity) {
  __shared__ T warp_results[32];
  __shared__ T result;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, offset));
  if (lane == 0) warp_results[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < warps ? warp_results[lane] : identity;
    for (int offset = 16; offset > 0; offset >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, offset));
    if (lane == 0) result = x;
  }
  __syncthreads();
  const T out = result;
  __syncthreads();  // the next call may overwrite warp_results and result
  return out;
}

template <typename T>
__device__ __forceinline__ T block_sum(T x) {
  return block_reduce(x, SumOp{}, T(0));
}

template <typename T>
__device__ __forceinline__ T block_max(T x) {
  return block_reduce(x, MaxOp{}, negative_infinity<T>());
}

}  // namespace csad::gpu::kernels::detail
