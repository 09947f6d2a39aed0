// Batched cosine similarity on CUDA: out[b, i, j] = <x_i, y_j> / (max(|x_i|, eps) max(|y_j|, eps)),
// eps = 1e-12 as in F.normalize. One kernel normalises the rows, one cuBLAS GEMM does the rest.
// Mirrors csrc/cpu/cosine_similarity.cpp.
//
// STATUS: syntax-checked against torch 2.13's headers, but NOT yet compiled into the extension (that
// needs a CUDA build of torch) nor run on a GPU; tests/test_cuda_ops.py is the check to run.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cuda_common.h"

namespace csad::gpu {
namespace {

void check_inputs(const at::Tensor& x, const at::Tensor& y) {
  TORCH_CHECK(x.is_cuda() && y.is_cuda() && x.device() == y.device(),
              "csad::cosine_similarity (CUDA): x and y must be CUDA tensors on one device, got ", x.device(), " and ",
              y.device());
  check_row_pair(x, y, "cosine_similarity");
}

}  // namespace

at::Tensor cosine_similarity_forward(const at::Tensor& x, const at::Tensor& y) {
  check_inputs(x, y);
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const Fp32GemmGuard fp32_gemms;
  const auto xb = as_batched(x), yb = as_batched(y);
  const auto xn = std::get<0>(normalize_rows(xb)), yn = std::get<0>(normalize_rows(yb));
  return at::bmm(xn, yn.transpose(1, 2)).reshape(pair_shape(x, y)).to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> cosine_similarity_backward(const at::Tensor& grad, const at::Tensor& x,
                                                              const at::Tensor& y) {
  check_inputs(x, y);
  check_cuda(grad, "grad");
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const Fp32GemmGuard fp32_gemms;
  const auto xb = as_batched(x), yb = as_batched(y);
  const auto [xn, inv_x] = normalize_rows(xb);
  const auto [yn, inv_y] = normalize_rows(yb);
  const auto g = grad.to(xb.scalar_type()).contiguous().reshape({xb.size(0), xb.size(1), yb.size(1)});
  auto grad_x = at::bmm(g, yn);
  auto grad_y = at::bmm(g.transpose(1, 2), xn);
  normalize_backward_(grad_x, xn, inv_x);
  normalize_backward_(grad_y, yn, inv_y);
  return {grad_x.reshape(x.sizes()).to(x.scalar_type()), grad_y.reshape(y.sizes()).to(y.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CUDA, m) {
  m.impl("cosine_similarity", &cosine_similarity_forward);
  m.impl("cosine_similarity_backward", &cosine_similarity_backward);
}

}  // namespace csad::gpu
