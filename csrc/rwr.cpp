// Random Walk with Restart R = rows of (1 - c)(I - cE)^-1 renormalised, forward and backward, written once
// over the per-device primitives (csad::cpu::Primitives, csad::gpu::Primitives; see
// csrc/cs_mutual_information.cpp) and registered for CPU and (WITH_CUDA) CUDA. The inverse is one LAPACK
// LU per matrix on the CPU and at::linalg_inv_ex without its error check (cuSOLVER, no host sync) on CUDA;
// the rows are renormalised by an at::parallel_for loop or a kernel; the backward's two GEMMs go to
// BLAS/cuBLAS. The forward also returns the row sums of W = (I - cE)^-1, from which the backward rebuilds W.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "primitives.h"

namespace csad {
namespace {

template <typename Primitives>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& e, double c) {
  Primitives::check_devices(e, e, "rwr");
  const typename Primitives::Scope scope(e.device());
  auto [r, w_row_sums] = Primitives::rwr_forward(as_batched(e), c);
  auto batch = e.sizes().vec();
  batch.pop_back();
  return {r.reshape(e.sizes()).to(e.scalar_type()), w_row_sums.reshape(batch)};
}

template <typename Primitives>
at::Tensor backward(const at::Tensor& grad, const at::Tensor& r, const at::Tensor& w_row_sums, double c) {
  Primitives::check_devices(grad, r, "rwr_backward");
  Primitives::check_devices(w_row_sums, r, "rwr_backward");
  const typename Primitives::Scope scope(r.device());
  const auto rb = as_batched(r);
  const auto sums = w_row_sums.to(rb.scalar_type()).contiguous().reshape({rb.size(0), rb.size(1)});
  // rwr_backward consumes its dL/dR (renormalisation's backward in place): a copy of its own.
  return Primitives::rwr_backward(as_batched_copy(grad), rb, sums, c).reshape(r.sizes()).to(r.scalar_type());
}

}  // namespace

CSAD_REGISTER_FORWARD_BACKWARD("rwr", "rwr_backward", forward, backward)

}  // namespace csad
