#include "common.h"

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace csad::cpu {
namespace {

constexpr int64_t kRowGrain = 16;

// Sums accumulate in double for float inputs.
template <typename scalar_t>
using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;

template <typename scalar_t>
scalar_t softplus(scalar_t x) {
  return std::max(x, scalar_t(0)) + std::log1p(std::exp(-std::abs(x)));
}

template <typename scalar_t>
scalar_t sigmoid(scalar_t x) {
  return x >= 0 ? scalar_t(1) / (scalar_t(1) + std::exp(-x)) : std::exp(x) / (scalar_t(1) + std::exp(x));
}

// Calls fn(row_index, row_pointer, row_length) for every row of a (batch, rows, cols) tensor.
template <typename scalar_t, typename Fn>
void for_each_row(const at::Tensor& t, const Fn& fn) {
  TORCH_INTERNAL_ASSERT(t.is_contiguous(), "csad: row loops need contiguous tensors");
  const int64_t cols = t.size(-1);
  scalar_t* data = t.data_ptr<scalar_t>();
  at::parallel_for(0, t.numel() / cols, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r, data + r * cols, cols);
  });
}

}  // namespace

at::Tensor inverse_row_norms(const at::Tensor& t) {
  auto out = at::empty({t.size(0), t.size(1)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "csad_inverse_row_norms", [&] {
    scalar_t* dst = out.data_ptr<scalar_t>();
    for_each_row<scalar_t>(t, [&](int64_t r, const scalar_t* row, int64_t d) {
      acc_t<scalar_t> squares = 0;
      for (int64_t k = 0; k < d; ++k) squares += acc_t<scalar_t>(row[k]) * row[k];
      dst[r] = static_cast<scalar_t>(1 / std::max(std::sqrt(squares), acc_t<scalar_t>(kNormEps)));
    });
  });
  return out;
}

at::Tensor scale_rows(const at::Tensor& t, const at::Tensor& inv_norm) {
  return t * inv_norm.unsqueeze(-1);
}

void normalize_backward_(at::Tensor& grad, const at::Tensor& normalized, const at::Tensor& inv_norm) {
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "csad_normalize_backward", [&] {
    const scalar_t* n = normalized.data_ptr<scalar_t>();
    const scalar_t* inv = inv_norm.data_ptr<scalar_t>();
    const scalar_t clamped = scalar_t(1) / scalar_t(kNormEps);
    for_each_row<scalar_t>(grad, [&](int64_t r, scalar_t* g, int64_t d) {
      const scalar_t* nrow = n + r * d;
      acc_t<scalar_t> dot = 0;
      if (inv[r] < clamped)
        for (int64_t k = 0; k < d; ++k) dot += acc_t<scalar_t>(nrow[k]) * g[k];
      for (int64_t k = 0; k < d; ++k) g[k] = inv[r] * (g[k] - nrow[k] * static_cast<scalar_t>(dot));
    });
  });
}

at::Tensor softmax_rows(at::Tensor s, double tau) {
  return at::_softmax(s.mul_(tau), -1, /*half_to_float=*/false);
}

std::tuple<at::Tensor, at::Tensor> softmax_backward(at::Tensor grad, const at::Tensor& e, const at::Tensor& s,
                                                    double tau) {
  auto grad_s = grad.contiguous();  // grad's own storage when contiguous: the caller hands it over
  const bool with_tau = s.defined();
  auto tau_rows = at::empty({with_tau ? grad_s.numel() / grad_s.size(-1) : 0}, grad_s.options());
  AT_DISPATCH_FLOATING_TYPES(grad_s.scalar_type(), "csad_softmax_backward", [&] {
    const scalar_t* edata = e.data_ptr<scalar_t>();
    const scalar_t* sdata = with_tau ? s.data_ptr<scalar_t>() : nullptr;
    scalar_t* tau_out = tau_rows.data_ptr<scalar_t>();
    const scalar_t t = static_cast<scalar_t>(tau);
    for_each_row<scalar_t>(grad_s, [&](int64_t r, scalar_t* g, int64_t n) {
      const scalar_t* erow = edata + r * n;
      acc_t<scalar_t> dot = 0;
      for (int64_t j = 0; j < n; ++j) dot += acc_t<scalar_t>(g[j]) * erow[j];
      const auto dot_t = static_cast<scalar_t>(dot);
      if (!with_tau) {
        for (int64_t j = 0; j < n; ++j) g[j] = t * (erow[j] * (g[j] - dot_t));
        return;
      }
      const scalar_t* srow = sdata + r * n;
      acc_t<scalar_t> mean_s = 0;
      for (int64_t j = 0; j < n; ++j) mean_s += acc_t<scalar_t>(srow[j]) * erow[j];
      const auto mean_t = static_cast<scalar_t>(mean_s);
      acc_t<scalar_t> tau_sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        const scalar_t dz = erow[j] * (g[j] - dot_t);
        tau_sum += dz * (srow[j] - mean_t);
        g[j] = t * dz;
      }
      tau_out[r] = static_cast<scalar_t>(tau_sum);
    });
  });
  return {grad_s, with_tau ? tau_rows.sum() : at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor> rwr_forward(const at::Tensor& e, double c) {
  const int64_t n = e.size(-1);
  auto system = at::eye(n, e.options()).sub(e, c);  // I - cE (broadcast over the batch)
  // W (LAPACK returns it column-major), made R below. One matrix per LAPACK call, never a batched call
  // nor one inside at::parallel_for: ATen runs a batch's LU solves on several OpenMP threads, and
  // concurrent MKL getrs calls fail ("Parameter 6 was incorrect on entry to SLASWP") or hang (issue 15).
  auto r = at::empty_like(system);
  for (int64_t b = 0; b < system.size(0); ++b) r[b].copy_(at::linalg_inv(system[b]));
  auto row_sums = at::empty({r.size(0), n}, r.options());
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "csad_rwr_normalise", [&] {
    scalar_t* sums = row_sums.data_ptr<scalar_t>();
    for_each_row<scalar_t>(r, [&](int64_t i, scalar_t* row, int64_t cols) {
      acc_t<scalar_t> total = 0;
      for (int64_t j = 0; j < cols; ++j) total += row[j];
      sums[i] = static_cast<scalar_t>(total);
      const auto inv = static_cast<scalar_t>(1 / total);
      for (int64_t j = 0; j < cols; ++j) row[j] *= inv;
    });
  });
  return {r, row_sums};
}

at::Tensor rwr_backward(at::Tensor grad_r, const at::Tensor& r, const at::Tensor& w_row_sums, double c) {
  // R = W / rowsum(W): dW = (dR - <dR, R>_row) / rowsum(W), in place on grad_r.
  AT_DISPATCH_FLOATING_TYPES(grad_r.scalar_type(), "csad_rwr_normalise_backward", [&] {
    const scalar_t* rdata = r.data_ptr<scalar_t>();
    const scalar_t* sums = w_row_sums.data_ptr<scalar_t>();
    for_each_row<scalar_t>(grad_r, [&](int64_t i, scalar_t* g, int64_t n) {
      const scalar_t* rrow = rdata + i * n;
      acc_t<scalar_t> dot = 0;
      for (int64_t j = 0; j < n; ++j) dot += acc_t<scalar_t>(g[j]) * rrow[j];
      const scalar_t inv = scalar_t(1) / sums[i];
      for (int64_t j = 0; j < n; ++j) g[j] = static_cast<scalar_t>((g[j] - dot) * inv);
    });
  });
  const auto w_t = (r * w_row_sums.unsqueeze(-1)).transpose(1, 2);
  return at::bmm(at::bmm(w_t, grad_r), w_t).mul_(c);
}

// d/dp of 1/2 <G, P log(Q)^T + log(P) Q^T> for one side: 1/2 (G log(Q) + (G Q) / P), where the
// log's clamp at the smallest normal number cuts the second term's gradient.
at::Tensor sce_side_grad(const at::Tensor& g, const at::Tensor& p, const at::Tensor& q) {
  auto grad = at::bmm(g, q);
  const double tiny = smallest_normal(p.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "csad_sce_backward", [&] {
    const scalar_t* pdata = p.data_ptr<scalar_t>();
    for_each_row<scalar_t>(grad, [&](int64_t r, scalar_t* row, int64_t k) {
      const scalar_t* prow = pdata + r * k;
      for (int64_t j = 0; j < k; ++j) row[j] = prow[j] >= scalar_t(tiny) ? row[j] / prow[j] : scalar_t(0);
    });
  });
  return grad.baddbmm_(g, safe_log(q), /*beta=*/0.5, /*alpha=*/0.5);
}

PairsInput::PairsInput(const c10::optional<at::Tensor>& labels_in, const c10::optional<at::Tensor>& mask_in,
                       int64_t n, int64_t tolerance, const c10::optional<at::Tensor>& groups_in) {
  TORCH_CHECK(labels_in.has_value() != mask_in.has_value(), "csad: pass exactly one of labels and mask");
  pairs.n = n;
  pairs.tolerance = tolerance;
  if (mask_in.has_value()) {
    TORCH_CHECK(mask_in->scalar_type() == at::kBool, "csad: mask must be bool");
    mask = mask_in->contiguous().reshape({-1, n, n});
    pairs.mask = mask.data_ptr<bool>();
  } else {
    labels = labels_in->to(at::kLong).contiguous();
    pairs.k = labels.size(-1);
    labels = labels.reshape({-1, n, pairs.k});
    pairs.labels = labels.data_ptr<int64_t>();
  }
  if (groups_in.has_value()) {
    TORCH_CHECK(groups_in->dim() >= 1 && groups_in->size(-1) == n, "csad: groups must have shape (..., N), got ",
                groups_in->sizes());
    groups = groups_in->to(at::kLong).contiguous().reshape({-1, n});
    pairs.groups = groups.data_ptr<int64_t>();
  }
}

namespace {

// Per-row partial reductions of one side of the pairs (Ω: x = -pos·S, ¬Ω: x = neg·S).
template <typename scalar_t>
struct RowPartials {
  std::vector<scalar_t> top;            // cs/ms: max x over the row's members of this side
  std::vector<acc_t<scalar_t>> total;  // cs/ms: sum exp(x - top); jsd: sum softplus(x)
  std::vector<int64_t> count;
  explicit RowPartials(int64_t rows)
      : top(rows, -std::numeric_limits<scalar_t>::infinity()), total(rows, 0), count(rows, 0) {}
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> mi_forward(const at::Tensor& scores, Scales scales, const Pairs& pairs,
                                              Estimator estimator, bool mean) {
  const int64_t batch = scores.size(0), n = scores.size(1);
  auto value = at::empty({batch}, scores.options());
  auto stats = at::zeros({batch, kStats}, scores.options().dtype(at::kDouble));
  const bool lse_form = estimator != Estimator::kJsd;
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "csad_mi_forward", [&] {
    const scalar_t a_in = static_cast<scalar_t>(scales.pos), a_out = static_cast<scalar_t>(scales.neg);
    RowPartials<scalar_t> inside(batch * n), outside(batch * n);
    for_each_row<scalar_t>(scores, [&](int64_t r, const scalar_t* row, int64_t) {
      const int64_t b = r / n, i = r % n;
      for (int pass = 0; pass < (lse_form ? 2 : 1); ++pass) {
        for (int64_t j = 0; j < n; ++j) {
          if (!pairs.counted(b, i, j)) continue;
          const bool member = pairs(b, i, j);
          const scalar_t x = member ? -a_in * row[j] : a_out * row[j];
          RowPartials<scalar_t>& side = member ? inside : outside;
          if (!lse_form) {
            side.total[r] += softplus(x);
            side.count[r] += 1;
          } else if (pass == 0) {
            side.top[r] = std::max(side.top[r], x);
            side.count[r] += 1;
          } else {
            side.total[r] += std::exp(x - side.top[r]);
          }
        }
      }
    });
    scalar_t* out = value.data_ptr<scalar_t>();
    double* st = stats.data_ptr<double>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        acc_t<scalar_t> total_value = 0;
        int side_index = 0;
        for (const RowPartials<scalar_t>* side : {&inside, &outside}) {
          int64_t count = 0;
          scalar_t top = -std::numeric_limits<scalar_t>::infinity();
          acc_t<scalar_t> sum = 0;
          for (int64_t i = b * n; i < (b + 1) * n; ++i) {
            count += side->count[i];
            if (lse_form) {
              if (side->count[i] > 0) top = std::max(top, side->top[i]);
            } else {
              sum += side->total[i];
            }
          }
          if (count > 0) {
            double* s = st + b * kStats;
            const double weight = mean ? 1.0 / static_cast<double>(count) : 1.0;
            if (lse_form) {
              for (int64_t i = b * n; i < (b + 1) * n; ++i)
                if (side->count[i] > 0) sum += side->total[i] * std::exp(side->top[i] - top);
              const double log_sum = std::log(static_cast<double>(sum));
              const double lse = log_sum + top;
              const double level = mean ? lse - std::log(static_cast<double>(count)) : lse;
              const double term = softplus(level);
              // ms: -(1/w) log(1 + Σ e^x) for the side's scale w
              const double divisor =
                  estimator == Estimator::kMs ? (side_index == 0 ? scales.pos : scales.neg) : 1.0;
              total_value -= term / divisor;
              s[2 * side_index] = top;
              s[2 * side_index + 1] = sigmoid(level);
              s[4 + side_index] = term;
              s[6 + side_index] = log_sum;
            } else {
              total_value -= sum * weight;
              s[2 * side_index + 1] = weight;
            }
          }
          ++side_index;
        }
        out[b] = static_cast<scalar_t>(total_value);
      }
    });
  });
  return {value, stats};
}

std::tuple<at::Tensor, at::Tensor> mi_backward(const at::Tensor& grad_value, const at::Tensor& scores, Scales scales,
                                               const at::Tensor& stats, const Pairs& pairs, Estimator estimator) {
  const int64_t batch = scores.size(0), n = scores.size(1);
  auto grad_scores = at::empty_like(scores);
  auto side_rows = at::empty({batch * n, 2}, scores.options().dtype(at::kDouble));
  const bool lse_form = estimator != Estimator::kJsd;
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "csad_mi_backward", [&] {
    const scalar_t a_in = static_cast<scalar_t>(scales.pos), a_out = static_cast<scalar_t>(scales.neg);
    // dI/dS = scale · D for cs/jsd (M = alpha·S); ms: D itself (its 1/w cancels the chain rule's w)
    const scalar_t out_scale = estimator == Estimator::kMs ? scalar_t(1) : a_in;
    const scalar_t* sdata = scores.data_ptr<scalar_t>();
    const double* st = stats.data_ptr<double>();
    const scalar_t* gv = grad_value.data_ptr<scalar_t>();
    double* srow = side_rows.data_ptr<double>();
    for_each_row<scalar_t>(grad_scores, [&](int64_t r, scalar_t* out, int64_t) {
      const int64_t b = r / n, i = r % n;
      const scalar_t* row = sdata + r * n;
      const double* s = st + b * kStats;
      double sum_in = 0, sum_out = 0;
      for (int64_t j = 0; j < n; ++j) {
        if (!pairs.counted(b, i, j)) {
          out[j] = scalar_t(0);
          continue;
        }
        // D; the side's max and then its log-sum are subtracted, and the exponential taken in double (a
        // float32 exponential put the scale gradient of ms past twice plain PyTorch's error,
        // tests/test_op_cs_mutual_information.py).
        double d;
        if (pairs(b, i, j)) {
          const scalar_t m = a_in * row[j];
          d = lse_form ? s[1] * std::exp((-static_cast<double>(m) - s[0]) - s[6]) : s[1] * sigmoid(-m);
          d *= gv[b];
          sum_in += d * row[j];
        } else {
          const scalar_t m = a_out * row[j];
          d = lse_form ? -s[3] * std::exp((static_cast<double>(m) - s[2]) - s[7]) : -s[3] * sigmoid(m);
          d *= gv[b];
          sum_out += d * row[j];
        }
        out[j] = static_cast<scalar_t>(out_scale * d);
      }
      srow[2 * r] = sum_in;
      srow[2 * r + 1] = sum_out;
    });
  });
  return {grad_scores, side_rows.reshape({batch, n, 2}).sum(1)};
}

void Primitives::check_devices(const at::Tensor& a, const at::Tensor& b, const char* op) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "csad::", op, " (CPU): CPU tensors expected, got ",
              a.device(), " and ", b.device());
}

std::tuple<at::Tensor, at::Tensor> Primitives::normalize_rows(const at::Tensor& t) {
  auto inv_norm = inverse_row_norms(t);
  return {scale_rows(t, inv_norm), inv_norm};
}

at::Tensor Primitives::softmax_rows(at::Tensor gram, const at::Tensor& tau) {
  return cpu::softmax_rows(std::move(gram), tau.item<double>());
}

std::tuple<at::Tensor, at::Tensor> Primitives::softmax_backward(at::Tensor grad_e, const at::Tensor& e,
                                                                const at::Tensor& gram, const at::Tensor& tau) {
  return cpu::softmax_backward(std::move(grad_e), e, gram, tau.item<double>());
}

PairsInput Primitives::pairs(const PairsSpec& spec, int64_t n, const at::Device&) {
  return PairsInput(spec.labels, spec.mask, n, spec.tolerance, spec.groups);
}

namespace {
// Undefined pos means 1, undefined neg means pos.
Scales host_scales(const at::Tensor& pos, const at::Tensor& neg) {
  const double pos_value = pos.defined() ? pos.item<double>() : 1.0;
  return {pos_value, neg.defined() ? neg.item<double>() : pos_value};
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> Primitives::mi_forward(const at::Tensor& scores, const at::Tensor& pos,
                                                          const at::Tensor& neg, const Pairs& pairs,
                                                          Estimator estimator, bool mean) {
  return cpu::mi_forward(scores, host_scales(pos, neg), pairs.pairs, estimator, mean);
}

std::tuple<at::Tensor, at::Tensor> Primitives::mi_backward(const at::Tensor& grad_value, const at::Tensor& scores,
                                                           const at::Tensor& pos, const at::Tensor& neg,
                                                           const at::Tensor& stats, const Pairs& pairs,
                                                           Estimator estimator) {
  return cpu::mi_backward(grad_value, scores, host_scales(pos, neg), stats, pairs.pairs, estimator);
}

}  // namespace csad::cpu
