// Row softmax adjacency E = softmax_rows(tau * s), forward and backward (with the centred tau gradient),
// written once over the per-device primitives (csad::cpu::Primitives, csad::gpu::Primitives; see
// csrc/cs_mutual_information.cpp) and registered for CPU and (WITH_CUDA) CUDA. The CPU primitives read tau
// on the host and use ATen's vectorised softmax; the CUDA ones keep tau on the device (no host
// synchronisation) and run one block per row, in place. Both may overwrite the tensor they are handed, so
// each gets a batched copy of its own (as_batched_copy), never a view of the op's input.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "primitives.h"

namespace csad {
namespace {

template <typename Primitives>
at::Tensor forward(const at::Tensor& s, const at::Tensor& tau) {
  Primitives::check_devices(s, s, "softmax_adjacency");
  const typename Primitives::Scope scope(s.device());
  return Primitives::softmax_rows(as_batched_copy(s), tau).reshape(s.sizes()).to(s.scalar_type());
}

// (dL/ds, dL/dtau), each undefined unless output_mask asks for it. Both come from one row pass over
// dZ = e * (g - <g, e>_row) (dL/ds = tau dZ); s is read, and may be None otherwise, only for dL/dtau.
template <typename Primitives>
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad, const at::Tensor& e,
                                            const c10::optional<at::Tensor>& s, const at::Tensor& tau,
                                            std::array<bool, 2> output_mask) {
  Primitives::check_devices(grad, e, "softmax_adjacency_backward");
  TORCH_CHECK(s.has_value() || !output_mask[1], "csad::softmax_adjacency_backward: dtau needs s");
  if (s.has_value()) Primitives::check_devices(*s, e, "softmax_adjacency_backward");
  const typename Primitives::Scope scope(e.device());
  if (!output_mask[0] && !output_mask[1]) return {at::Tensor(), at::Tensor()};
  const auto sb = output_mask[1] ? as_batched(*s) : at::Tensor();
  auto [grad_s, grad_tau] = Primitives::softmax_backward(as_batched_copy(grad), as_batched(e), sb, tau);
  return {output_mask[0] ? grad_s.reshape(e.sizes()).to(e.scalar_type()) : at::Tensor(),
          output_mask[1] ? grad_like(grad_tau, tau) : at::Tensor()};
}

}  // namespace

CSAD_REGISTER_FORWARD_BACKWARD("softmax_adjacency", "softmax_adjacency_backward", forward, backward)

}  // namespace csad
