"""Target metrics and bias leakage against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from python.metrics import (
    average_precision,
    balanced_accuracy,
    bias_leakage,
    f1_score,
    roc_auc,
    target_metrics,
    within_bin_auc,
)


def test_auc_counts_correctly_ordered_pairs_and_ties_as_half():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs (0.35>0.1), (0.35<0.4), (0.8>0.1), (0.8>0.4) → 3/4
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: (0.5 = 0.5) → 0.5, (0.5 > 0.2) → 1 → 0.75
    assert roc_auc(torch.tensor([0.2, 0.5, 0.5]), torch.tensor([0, 0, 1])) == pytest.approx(0.75)
    assert math.isnan(roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))


def test_auc_is_invariant_to_monotone_transforms_and_flips_with_the_scores():
    gen = torch.Generator().manual_seed(0)
    s, y = torch.randn(200, generator=gen), torch.randint(0, 2, (200,), generator=gen)
    assert roc_auc(torch.exp(3 * s), y) == pytest.approx(roc_auc(s, y))
    assert roc_auc(-s, y) == pytest.approx(1 - roc_auc(s, y))


def test_average_precision_by_hand():
    # ranked: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 → AP = .5·1 + .5·2/3
    ap = average_precision(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    # tied scores form one threshold: both at 0.5 → P = 1/2 at R = 1
    assert average_precision(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == pytest.approx(0.5)


def test_f1_and_balanced_accuracy_by_hand():
    predicted, y = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    # tp 2, fp 1, fn 1 → F1 = 4 / 6
    assert f1_score(predicted, y) == pytest.approx(4 / 6)
    # recall of 1: 2/3, of 0: 1/2
    assert balanced_accuracy(predicted, y) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_target_metrics_threshold_binary_logits_at_zero_and_argmax_multiclass():
    binary = target_metrics(torch.tensor([-1.0, 2.0, 0.5, -0.2]), torch.tensor([0, 1, 0, 1]))
    assert binary["accuracy"] == pytest.approx(0.5) and binary["auc"] == pytest.approx(0.75)
    multi = target_metrics(torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0]]), torch.tensor([0, 1, 2]))
    assert multi["accuracy"] == pytest.approx(2 / 3) and "auc" not in multi


def test_bias_leakage_is_high_for_encoded_bias_and_near_chance_for_independent_features():
    gen = torch.Generator().manual_seed(0)
    bias = torch.randint(0, 4, (600,), generator=gen)
    noise = torch.randn(600, 8, generator=gen)
    leaky = noise.clone()
    leaky[:, 0] += 5 * bias  # classes 5 sd apart: Bayes accuracy ≈ 0.99
    high, low = bias_leakage(leaky, bias), bias_leakage(noise, bias)
    assert high["balanced_accuracy"] > 0.9
    assert abs(low["balanced_accuracy"] - low["chance_balanced_accuracy"]) < 0.08
    assert low["chance_balanced_accuracy"] == pytest.approx(0.25) and low["n"] == 600


def test_bias_leakage_does_not_depend_on_the_global_rng():
    # collinear ReLU features of rank 4, like a trained network's: an ill-conditioned fit that a probe stopped early
    # (or started from a random point) leaves in different places from call to call
    gen = torch.Generator().manual_seed(1)
    bias = torch.randint(0, 8, (500,), generator=gen)
    low = torch.randn(500, 4, generator=gen) + bias[:, None].float() * torch.randn(4, generator=gen)
    features = torch.relu(low @ torch.randn(4, 64, generator=gen) + torch.randn(64, generator=gen))
    torch.manual_seed(0)
    first = bias_leakage(features, bias, seed=3)
    torch.manual_seed(1)
    assert bias_leakage(features, bias, seed=3) == first


def test_probe_minimises_its_stated_objective():
    from python.metrics import PROBE_L2, fit_logistic_regression

    gen = torch.Generator().manual_seed(2)
    y = torch.randint(0, 3, (300,), generator=gen)
    x = torch.randn(300, 5, generator=gen, dtype=torch.float64) + y[:, None]
    weight = torch.rand(300, generator=gen, dtype=torch.float64) + 0.5
    probe = fit_logistic_regression(x, y, sample_weight=weight)
    mean, sd = x.mean(0), x.std(0, unbiased=False)
    xs = (x - mean) / sd
    # recover W, b of the fitted logits on the standardised features (logits are affine in x)
    logits = probe(x)
    design = torch.cat([xs, torch.ones(300, 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, logits).solution
    params = coef.clone().requires_grad_(True)

    def objective(p):
        ce = torch.nn.functional.cross_entropy(design @ p, y, reduction="none")
        return (weight * ce).mean() + PROBE_L2 * p[:-1].square().sum()

    grad = torch.autograd.grad(objective(params), params)[0]
    assert grad.abs().max() < 1e-6


def test_within_bin_auc_ignores_a_shift_of_a_whole_bin_and_ranks_within_bins():
    y = torch.tensor([0, 1, 0, 1])
    bins = torch.tensor([0, 0, 1, 1])
    within = torch.tensor([0.0, 1.0, 0.0, 1.0])  # PD above control in each bin
    shift = torch.tensor([0.0, 0.0, 10.0, 10.0])  # bin 1 scored higher as a whole
    assert roc_auc(within + shift, y) == 0.75  # the shift puts bin 1's control above bin 0's PD
    assert within_bin_auc(within + shift, y, bins) == 1.0
    assert within_bin_auc(within + shift, y, torch.zeros(4)) == roc_auc(within + shift, y)  # one bin: plain AUC
    with pytest.raises(ValueError, match="bins"):
        within_bin_auc(within, y, bins[:3])


# ----- scikit-learn's metrics against the hand-written formulas they replaced (kept here only, as they were)

def _old_average_ranks(x):
    order = torch.argsort(x)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    mean_rank = torch.cumsum(counts, 0).double() - (counts.double() - 1) / 2
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def _old_roc_auc(scores, y):
    scores, y = scores.double().flatten(), y.flatten().bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((_old_average_ranks(scores)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _old_average_precision(scores, y):
    scores, y = scores.double().flatten(), y.flatten().double()
    n_pos = float(y.sum())
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order], y[order]
    last_of_tie = torch.ones_like(s, dtype=torch.bool)
    last_of_tie[:-1] = s[:-1] != s[1:]
    tp = torch.cumsum(t, 0)[last_of_tie]
    predicted = torch.nonzero(last_of_tie).flatten().double() + 1
    precision, recall = tp / predicted, tp / n_pos
    return float((torch.diff(recall, prepend=recall.new_zeros(1)) * precision).sum())


def _old_f1_score(predicted, y):
    predicted, y = predicted.flatten().bool(), y.flatten().bool()
    denominator = int(predicted.sum()) + int(y.sum())
    return 2 * int((predicted & y).sum()) / denominator if denominator else float("nan")


def _old_balanced_accuracy(predicted, y):
    recalls = [float((predicted[y == k] == k).double().mean()) for k in torch.unique(y)]
    return sum(recalls) / len(recalls)


def _same(new, old):
    assert (math.isnan(new) and math.isnan(old)) or new == pytest.approx(old, rel=1e-12, abs=1e-15), (new, old)


def _binary_cases():
    gen = torch.Generator().manual_seed(18)
    for trial in range(40):
        n = int(torch.randint(2, 300, (1,), generator=gen))
        scores = torch.randn(n, generator=gen, dtype=torch.float64)
        if trial % 3 == 1:
            scores = (scores * 2).round() / 2  # many ties
        if trial % 5 == 2:
            scores[: n // 4] = -math.inf  # a probe's logit of a class it never saw
            scores[n // 4: n // 3] = math.inf
        share = [0.5, 0.1, 0.0, 1.0][trial % 4] if trial < 20 else float(torch.rand(1, generator=gen))
        y = (torch.rand(n, generator=gen) < share).long()
        yield scores.float() if trial % 2 else scores, y


@pytest.mark.filterwarnings("error")  # scikit-learn stays silent where the old formulas were
def test_sklearn_auc_ap_f1_match_the_previous_formulas_on_random_inputs():
    for scores, y in _binary_cases():
        _same(roc_auc(scores, y), _old_roc_auc(scores, y))
        _same(average_precision(scores, y), _old_average_precision(scores, y))
        predicted = (scores > 0).long()
        _same(f1_score(predicted, y), _old_f1_score(predicted, y))
        _same(balanced_accuracy(predicted, y), _old_balanced_accuracy(predicted, y))
        bins = torch.randint(0, 3, y.shape, generator=torch.Generator().manual_seed(len(y)))
        scores64 = scores.double()
        means = torch.zeros(3, dtype=torch.float64).index_add_(0, bins, scores64) / torch.bincount(bins, minlength=3)
        if torch.isfinite(scores64).all():
            _same(within_bin_auc(scores, y, bins), _old_roc_auc(scores64 - means[bins], y))


@pytest.mark.filterwarnings("error")  # scikit-learn stays silent where the old formulas were
def test_sklearn_balanced_accuracy_matches_the_previous_formula_on_multiclass_inputs():
    gen = torch.Generator().manual_seed(5)
    for _ in range(30):
        n, k = int(torch.randint(1, 400, (1,), generator=gen)), int(torch.randint(2, 13, (1,), generator=gen))
        y = torch.randint(0, k, (n,), generator=gen)
        # predictions right half of the time, else any class (also ones absent from y)
        predicted = torch.where(torch.rand(n, generator=gen) < 0.5, y, torch.randint(0, k + 2, (n,), generator=gen))
        _same(balanced_accuracy(predicted, y), _old_balanced_accuracy(predicted, y))
    _same(balanced_accuracy(torch.tensor([1, 1, 0]), torch.tensor([1, 1, 1])), 2 / 3)  # one class in y
    _same(balanced_accuracy(torch.tensor([1, 1]), torch.tensor([1, 1])), 1.0)  # one label in y and predicted
