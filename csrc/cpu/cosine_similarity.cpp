// Fused batched cosine similarity on the CPU.
//
// out[b, i, j] = <x_i, y_j> / (max(|x_i|, eps) * max(|y_j|, eps)), eps = 1e-12 (F.normalize).
// The forward never writes normalised copies of x and y: one pass computes the inverse row
// norms, one BLAS GEMM computes <x_i, y_j>, and the scaling is applied in place on its output.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace csad {
namespace {

constexpr double kNormEps = 1e-12;
constexpr int64_t kRowGrain = 64;

at::ScalarType compute_type(at::ScalarType type) {
  return (type == at::kHalf || type == at::kBFloat16) ? at::kFloat : type;
}

void check_inputs(const at::Tensor& x, const at::Tensor& y) {
  TORCH_CHECK(x.device().is_cpu() && y.device().is_cpu(), "csad::cosine_similarity (CPU): x and y must be CPU tensors");
  TORCH_CHECK(x.dim() >= 2 && y.dim() == x.dim(), "csad::cosine_similarity: x and y must have the same rank >= 2, got ",
              x.sizes(), " and ", y.sizes());
  TORCH_CHECK(x.sizes().slice(0, x.dim() - 2) == y.sizes().slice(0, y.dim() - 2) && x.size(-1) == y.size(-1),
              "csad::cosine_similarity: x (..., N, d) and y (..., M, d) must share leading dims and d, got ", x.sizes(),
              " and ", y.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && x.scalar_type() == y.scalar_type(),
              "csad::cosine_similarity: x and y must have the same floating dtype");
}

// (batch, rows, d) contiguous view of a (..., rows, d) tensor, upcast to the compute dtype.
at::Tensor as_batched(const at::Tensor& t) {
  return t.to(compute_type(t.scalar_type())).contiguous().reshape({-1, t.size(-2), t.size(-1)});
}

// 1 / max(|row|, eps) for each row of a (batch, rows, d) contiguous tensor -> (batch, rows).
at::Tensor inverse_row_norms(const at::Tensor& t) {
  auto out = at::empty({t.size(0), t.size(1)}, t.options());
  const int64_t d = t.size(2);
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "csad_inverse_row_norms", [&] {
    const scalar_t* src = t.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, out.numel(), kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* row = src + r * d;
        scalar_t squares = 0;
        for (int64_t k = 0; k < d; ++k) squares += row[k] * row[k];
        dst[r] = scalar_t(1) / std::max(std::sqrt(squares), scalar_t(kNormEps));
      }
    });
  });
  return out;
}

// dst[b, i, j] = src[b, i, j] * row_scale[b, i] * col_scale[b, j]; dst may alias src.
void scale_rows_and_columns(const at::Tensor& src, at::Tensor& dst, const at::Tensor& row_scale,
                            const at::Tensor& col_scale) {
  const int64_t rows = src.size(1), cols = src.size(2);
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "csad_scale_rows_and_columns", [&] {
    const scalar_t* in = src.data_ptr<scalar_t>();
    scalar_t* out = dst.data_ptr<scalar_t>();
    const scalar_t* rs = row_scale.data_ptr<scalar_t>();
    const scalar_t* cs = col_scale.data_ptr<scalar_t>();
    at::parallel_for(0, src.size(0) * rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* col = cs + (r / rows) * cols;
        const scalar_t s = rs[r];
        for (int64_t j = 0; j < cols; ++j) out[r * cols + j] = in[r * cols + j] * s * col[j];
      }
    });
  });
}

// Gradient of F.normalize folded into the rows of p = inv_norm * dL/d(normalised t):
// grad_t = p - inv_norm^2 * t * <t, p> where |t| > eps, and p where the norm was clamped.
void project_out_radial(at::Tensor& p, const at::Tensor& t, const at::Tensor& inv_norm) {
  const int64_t d = t.size(2);
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "csad_project_out_radial", [&] {
    scalar_t* pd = p.data_ptr<scalar_t>();
    const scalar_t* td = t.data_ptr<scalar_t>();
    const scalar_t* inv = inv_norm.data_ptr<scalar_t>();
    const scalar_t clamped = scalar_t(1) / scalar_t(kNormEps);
    at::parallel_for(0, inv_norm.numel(), kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (inv[r] >= clamped) continue;
        scalar_t* prow = pd + r * d;
        const scalar_t* trow = td + r * d;
        scalar_t dot = 0;
        for (int64_t k = 0; k < d; ++k) dot += trow[k] * prow[k];
        const scalar_t coef = inv[r] * inv[r] * dot;
        for (int64_t k = 0; k < d; ++k) prow[k] -= coef * trow[k];
      }
    });
  });
}

std::vector<int64_t> output_shape(const at::Tensor& x, const at::Tensor& y) {
  auto shape = x.sizes().vec();
  shape.back() = y.size(-2);
  return shape;
}

}  // namespace

at::Tensor cosine_similarity_cpu(const at::Tensor& x, const at::Tensor& y) {
  check_inputs(x, y);
  const auto xb = as_batched(x), yb = as_batched(y);
  auto out = at::bmm(xb, yb.transpose(1, 2));
  scale_rows_and_columns(out, out, inverse_row_norms(xb), inverse_row_norms(yb));
  return out.reshape(output_shape(x, y)).to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> cosine_similarity_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                  const at::Tensor& y) {
  check_inputs(x, y);
  const auto xb = as_batched(x), yb = as_batched(y);
  const auto grad_b = grad.to(xb.scalar_type()).contiguous().reshape({xb.size(0), xb.size(1), yb.size(1)});
  const auto inv_x = inverse_row_norms(xb), inv_y = inverse_row_norms(yb);
  auto g = at::empty_like(grad_b);
  scale_rows_and_columns(grad_b, g, inv_x, inv_y);
  auto grad_x = at::bmm(g, yb);
  auto grad_y = at::bmm(g.transpose(1, 2), xb);
  project_out_radial(grad_x, xb, inv_x);
  project_out_radial(grad_y, yb, inv_y);
  return {grad_x.reshape(x.sizes()).to(x.scalar_type()), grad_y.reshape(y.sizes()).to(y.scalar_type())};
}

TORCH_LIBRARY_IMPL(csad, CPU, m) {
  m.impl("cosine_similarity", &cosine_similarity_cpu);
  m.impl("cosine_similarity_backward", &cosine_similarity_backward_cpu);
}

}  // namespace csad
