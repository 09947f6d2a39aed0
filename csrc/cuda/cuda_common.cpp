// Building blocks of the CUDA backend (see cuda_common.h), mirroring csrc/cpu/common.cpp line by
// line: the row loops of the CPU file are the kernels of row_kernels.cu and mi_kernels.cu here.
//
// STATUS: syntax-checked against torch 2.13's headers (CPU wheel) and the CUDA 13.0 runtime
// headers, but NOT yet compiled into the extension (that needs a CUDA build of torch) nor run on
// a GPU: the cuda cases of tests/test_op_*.py and tests/test_cuda_backend.py have to pass on a GPU machine before this backend is trusted.
#include "cuda_common.h"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>


namespace csad::gpu {
namespace {

cudaStream_t current_stream() {
  return at::cuda::getCurrentCUDAStream();
}

void check_rows(const at::Tensor& t, const char* what) {
  TORCH_INTERNAL_ASSERT(t.is_cuda(), "csad (CUDA): ", what, " needs a CUDA tensor");
  TORCH_INTERNAL_ASSERT(t.is_contiguous(), "csad (CUDA): ", what, " needs a contiguous tensor");
}

int64_t row_count(const at::Tensor& t) {
  return t.size(-1) == 0 ? 0 : t.numel() / t.size(-1);
}

}  // namespace

at::Tensor device_scalar(const at::Tensor& scalar, const at::Tensor& like) {
  TORCH_CHECK(scalar.numel() == 1, "csad (CUDA): a scalar argument must have one element, got shape ",
              scalar.sizes());
  return scalar.to(like.device(), like.scalar_type()).contiguous().reshape({1});
}

std::tuple<at::Tensor, at::Tensor> normalize_rows(const at::Tensor& t) {
  check_rows(t, "normalize_rows");
  auto out = at::empty_like(t);
  auto inv_norm = at::empty({t.size(0), t.size(1)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "csad_cuda_normalize_rows", [&] {
    C10_CUDA_CHECK(kernels::normalize_rows<scalar_t>(t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                                     inv_norm.data_ptr<scalar_t>(), row_count(t), t.size(-1),
                                                     current_stream()));
  });
  return {out, inv_norm};
}

void normalize_backward_(at::Tensor& grad, const at::Tensor& normalized, const at::Tensor& inv_norm) {
  check_rows(grad, "normalize_backward_");
  check_rows(normalized, "normalize_backward_");
  const auto inv = inv_norm.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "csad_cuda_normalize_backward", [&] {
    C10_CUDA_CHECK(kernels::normalize_backward<scalar_t>(grad.data_ptr<scalar_t>(), normalized.data_ptr<scalar_t>(),
                                                         inv.data_ptr<scalar_t>(), row_count(grad), grad.size(-1),
                                                         current_stream()));
  });
}

void softmax_rows_(at::Tensor& s, const at::Tensor& tau) {
  check_rows(s, "softmax_rows_");
  const auto t = device_scalar(tau, s);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "csad_cuda_softmax_rows", [&] {
    C10_CUDA_CHECK(kernels::softmax_rows<scalar_t>(s.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), row_count(s),
                                                   s.size(-1), current_stream()));
  });
}

at::Tensor softmax_backward_(at::Tensor& grad, const at::Tensor& e, const at::Tensor& s, const at::Tensor& tau) {
  check_rows(grad, "softmax_backward_");
  check_rows(e, "softmax_backward_");
  const bool with_tau = s.defined();
  if (with_tau) check_rows(s, "softmax_backward_");
  auto tau_rows = at::empty({with_tau ? row_count(grad) : 0}, grad.options());
  const auto t = device_scalar(tau, grad);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "csad_cuda_softmax_backward", [&] {
    C10_CUDA_CHECK(kernels::softmax_backward<scalar_t>(
        grad.data_ptr<scalar_t>(), e.data_ptr<scalar_t>(), with_tau ? s.data_ptr<scalar_t>() : nullptr,
        t.data_ptr<scalar_t>(), with_tau ? tau_rows.data_ptr<scalar_t>() : nullptr, row_count(grad), grad.size(-1),
        current_stream()));
  });
  return with_tau ? tau_rows.sum() : at::Tensor();
}

std::tuple<at::Tensor, at::Tensor> rwr_forward(const at::Tensor& e, double c) {
  const int64_t n = e.size(-1);
  auto system = at::eye(n, e.options()).sub(e, c);  // I - cE (broadcast over the batch)
  // W (cuSOLVER/MAGMA, may come column-major), made R below. linalg_inv_ex without its error check: linalg_inv
  // would copy the info codes to the host (a sync); I - cE is nonsingular for row-stochastic E and c < 1.
  auto r = std::get<0>(at::linalg_inv_ex(system, /*check_errors=*/false)).contiguous();
  auto row_sums = at::empty({r.size(0), n}, r.options());
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "csad_cuda_rwr_normalise", [&] {
    C10_CUDA_CHECK(kernels::rwr_normalize_rows<scalar_t>(r.data_ptr<scalar_t>(), row_sums.data_ptr<scalar_t>(),
                                                         row_count(r), n, current_stream()));
  });
  return {r, row_sums};
}

at::Tensor rwr_backward(at::Tensor grad_r, const at::Tensor& r, const at::Tensor& w_row_sums, double c) {
  // R = W / rowsum(W): dW = (dR - <dR, R>_row) / rowsum(W), in place on grad_r.
  check_rows(grad_r, "rwr_backward");
  check_rows(r, "rwr_backward");
  const auto sums = w_row_sums.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad_r.scalar_type(), "csad_cuda_rwr_normalise_backward", [&] {
    C10_CUDA_CHECK(kernels::rwr_normalize_backward<scalar_t>(grad_r.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                                                             sums.data_ptr<scalar_t>(), row_count(grad_r),
                                                             grad_r.size(-1), current_stream()));
  });
  const auto w_t = (r * w_row_sums.unsqueeze(-1)).transpose(1, 2);
  return at::bmm(at::bmm(w_t, grad_r), w_t).mul_(c);
}

// d/dp of 1/2 <G, P log(Q)^T + log(P) Q^T> for one side: 1/2 (G log(Q) + (G Q) / P), where the
// log's clamp at the smallest normal number cuts the second term's gradient.
at::Tensor sce_side_grad(const at::Tensor& g, const at::Tensor& p, const at::Tensor& q) {
  auto grad = at::bmm(g, q).contiguous();
  const auto pc = p.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "csad_cuda_sce_backward", [&] {
    C10_CUDA_CHECK(kernels::sce_divide<scalar_t>(grad.data_ptr<scalar_t>(), pc.data_ptr<scalar_t>(), grad.numel(),
                                                 current_stream()));
  });
  return grad.baddbmm_(g, safe_log(q), /*beta=*/0.5, /*alpha=*/0.5);
}

PairsInput::PairsInput(const c10::optional<at::Tensor>& labels_in, const c10::optional<at::Tensor>& mask_in,
                       int64_t n, int64_t tolerance, const at::Device& device,
                       const c10::optional<at::Tensor>& groups_in) {
  TORCH_CHECK(labels_in.has_value() != mask_in.has_value(), "csad: pass exactly one of labels and mask");
  view.n = n;
  view.tolerance = tolerance;
  if (mask_in.has_value()) {
    TORCH_CHECK(mask_in->scalar_type() == at::kBool, "csad: mask must be bool");
    TORCH_CHECK(mask_in->device() == device, "csad (CUDA): mask must be on ", device, ", got ", mask_in->device());
    mask = mask_in->contiguous().reshape({-1, n, n});
    view.mask = mask.data_ptr<bool>();
  } else {
    TORCH_CHECK(labels_in->device() == device, "csad (CUDA): labels must be on ", device, ", got ",
                labels_in->device());
    labels = labels_in->to(at::kLong).contiguous();
    view.k = labels.size(-1);
    labels = labels.reshape({-1, n, view.k});
    view.labels = labels.data_ptr<int64_t>();
  }
  if (groups_in.has_value()) {
    TORCH_CHECK(groups_in->device() == device, "csad (CUDA): groups must be on ", device, ", got ",
                groups_in->device());
    TORCH_CHECK(groups_in->dim() >= 1 && groups_in->size(-1) == n, "csad: groups must have shape (..., N), got ",
                groups_in->sizes());
    groups = groups_in->to(at::kLong).contiguous().reshape({-1, n});
    view.groups = groups.data_ptr<int64_t>();
  }
}

static_assert(kStats == kernels::kStatsPerProblem, "csrc/shared.h and launchers.h disagree on the stats' size");

namespace {

kernels::Loss loss_of(Estimator estimator) {
  switch (estimator) {
    case Estimator::kCs:
      return kernels::Loss::kCs;
    case Estimator::kJsd:
      return kernels::Loss::kJsd;
    default:
      return kernels::Loss::kMs;
  }
}

// Device scalar of an optional scale (undefined stays undefined) and its pointer (nullptr if undefined).
template <typename scalar_t>
const scalar_t* pointer_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<scalar_t>() : nullptr;
}

Scales on_device(const Scales& scales, const at::Tensor& like) {
  return {scales.pos.defined() ? device_scalar(scales.pos, like) : at::Tensor(),
          scales.neg.defined() ? device_scalar(scales.neg, like) : at::Tensor()};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> mi_forward(const at::Tensor& scores, const Scales& scales_in,
                                              const kernels::PairsView& pairs, Estimator estimator, bool mean) {
  check_rows(scores, "mi_forward");
  const int64_t batch = scores.size(0), n = scores.size(1);
  TORCH_INTERNAL_ASSERT(n == pairs.n, "csad (CUDA): scores and pairs disagree on N");
  auto value = at::empty({batch}, scores.options());
  auto stats = at::zeros({batch, kStats}, scores.options().dtype(at::kDouble));
  auto row_partials = at::empty({batch * n, 4}, scores.options());
  auto row_counts = at::empty({batch * n, 2}, scores.options().dtype(at::kLong));
  const Scales scales = on_device(scales_in, scores);
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "csad_cuda_mi_forward", [&] {
    C10_CUDA_CHECK(kernels::mi_forward<scalar_t>(
        scores.data_ptr<scalar_t>(), pointer_or_null<scalar_t>(scales.pos), pointer_or_null<scalar_t>(scales.neg),
        pairs, loss_of(estimator), mean, batch, row_partials.data_ptr<scalar_t>(),
        reinterpret_cast<long long*>(row_counts.data_ptr<int64_t>()), value.data_ptr<scalar_t>(),
        stats.data_ptr<double>(), current_stream()));
  });
  return {value, stats};
}

std::tuple<at::Tensor, at::Tensor> mi_backward(const at::Tensor& grad_value, const at::Tensor& scores,
                                               const Scales& scales_in, const at::Tensor& stats_in,
                                               const kernels::PairsView& pairs, Estimator estimator) {
  check_rows(scores, "mi_backward");
  const int64_t batch = scores.size(0), n = scores.size(1);
  TORCH_INTERNAL_ASSERT(n == pairs.n, "csad (CUDA): scores and pairs disagree on N");
  auto grad_scores = at::empty_like(scores);
  auto side_rows = at::empty({batch * n, 2}, scores.options().dtype(at::kDouble));
  const auto gv = grad_value.to(scores.scalar_type()).contiguous();
  const auto stats = stats_in.to(at::kDouble).contiguous();
  const Scales scales = on_device(scales_in, scores);
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "csad_cuda_mi_backward", [&] {
    C10_CUDA_CHECK(kernels::mi_backward<scalar_t>(
        gv.data_ptr<scalar_t>(), scores.data_ptr<scalar_t>(), pointer_or_null<scalar_t>(scales.pos),
        pointer_or_null<scalar_t>(scales.neg), stats.data_ptr<double>(), pairs, loss_of(estimator), batch,
        grad_scores.data_ptr<scalar_t>(), side_rows.data_ptr<double>(), current_stream()));
  });
  return {grad_scores, side_rows.reshape({batch, n, 2}).sum(1)};
}

void Primitives::check_devices(const at::Tensor& a, const at::Tensor& b, const char* op) {
  TORCH_CHECK(a.is_cuda() && b.is_cuda() && a.device() == b.device(), "csad::", op,
              " (CUDA): CUDA tensors on one device expected, got ", a.device(), " and ", b.device());
}

at::Tensor Primitives::softmax_rows(at::Tensor gram, const at::Tensor& tau) {
  softmax_rows_(gram, tau);
  return gram;
}

std::tuple<at::Tensor, at::Tensor> Primitives::softmax_backward(at::Tensor grad_e, const at::Tensor& e,
                                                                const at::Tensor& gram, const at::Tensor& tau) {
  auto grad_tau = softmax_backward_(grad_e, e, gram, tau);  // grad_e is now dL/dgram
  return {grad_e, grad_tau};
}

PairsInput Primitives::pairs(const PairsSpec& spec, int64_t n, const at::Device& device) {
  return PairsInput(spec.labels, spec.mask, n, spec.tolerance, device, spec.groups);
}

std::tuple<at::Tensor, at::Tensor> Primitives::mi_forward(const at::Tensor& scores, const at::Tensor& pos,
                                                          const at::Tensor& neg, const Pairs& pairs,
                                                          Estimator estimator, bool mean) {
  return gpu::mi_forward(scores, Scales{pos, neg}, pairs.view, estimator, mean);
}

std::tuple<at::Tensor, at::Tensor> Primitives::mi_backward(const at::Tensor& grad_value, const at::Tensor& scores,
                                                           const at::Tensor& pos, const at::Tensor& neg,
                                                           const at::Tensor& stats, const Pairs& pairs,
                                                           Estimator estimator) {
  return gpu::mi_backward(grad_value, scores, Scales{pos, neg}, stats, pairs.view, estimator);
}

}  // namespace csad::gpu
