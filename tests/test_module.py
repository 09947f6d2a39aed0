import pytest
import torch
from _helpers import clustered, labels

import csad_kernels as ck


def test_heads_have_the_configured_sizes_and_scalars_their_initial_values():
    module = ck.CrossSampleMI((64, 64, 32, 32), (48, 32), alpha=2.0, tau=5.0)
    assert [layer.out_features for layer in module.head_y if isinstance(layer, torch.nn.Linear)] == [64, 32, 32]
    assert [layer.out_features for layer in module.head_b if isinstance(layer, torch.nn.Linear)] == [32]
    assert module.alpha.item() == 2.0 and module.tau_y.item() == 5.0 and module.tau_b.item() == 5.0
    names = {name for name, _ in module.named_parameters()}
    assert {"alpha", "tau_y", "tau_b"} <= names


def test_forward_equals_the_functional_estimator_on_the_heads_outputs():
    module = ck.CrossSampleMI((10, 16, 8), tolerance=1, estimator="jsd").double()
    hy, _ = clustered((2,), 12, 10, seed=1)
    hb, _ = clustered((2,), 12, 10, seed=2)
    bias = labels((2,), 12, classes=5, k=3)
    expected = ck.cs_mutual_information(
        module.head_y(hy),
        module.head_b(hb),
        bias,
        alpha=module.alpha,
        tau_y=module.tau_y,
        tau_b=module.tau_b,
        tolerance=1,
        estimator="jsd",
    )
    torch.testing.assert_close(module(hy, hb, bias), expected)


def test_every_parameter_gets_a_gradient():
    module = ck.CrossSampleMI((6, 8, 4))
    hy, hb = torch.randn(16, 6), torch.randn(16, 6)
    (-module(hy, hb, labels((), 16, classes=3))).backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_maximising_raises_the_estimate_when_features_share_the_bias():
    torch.manual_seed(1)
    bias = torch.arange(64) % 4
    hb = torch.nn.functional.one_hot(bias, 4).float() + 0.1 * torch.randn(64, 4)
    hy = hb @ torch.randn(4, 6) + 0.1 * torch.randn(64, 6)
    module = ck.CrossSampleMI((6, 16, 8), (4, 16, 8), similarity="content")
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-2)
    start = module(hy, hb, bias).item()
    for _ in range(60):
        optimiser.zero_grad()
        (-module(hy, hb, bias)).backward()
        optimiser.step()
    assert module(hy, hb, bias).item() > start + 0.1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sizes_y=(8,)), "sizes_y must list at least two"),
        (dict(sizes_y=(8, 0)), "sizes_y must list at least two positive ints"),
        (dict(sizes_y=(8, 4), sizes_b=(8, 5)), "end in the same embedding size"),
        (dict(similarity="both"), "similarity must be one of"),
        (dict(estimator="mine"), "estimator must be one of"),
        (dict(reduction="none"), "reduction must be one of"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ck.CrossSampleMI(**kwargs)


def test_inputs_of_the_wrong_width_are_rejected():
    module = ck.CrossSampleMI((6, 4))
    with pytest.raises(ValueError, match=r"hb must have shape \(\.\.\., N, 6\)"):
        module(torch.randn(5, 6), torch.randn(5, 7), torch.zeros(5, dtype=torch.long))


def test_module_learns_positive_ms_scales_and_takes_groups():
    torch.manual_seed(0)
    module = ck.CrossSampleMI((4, 8, 4), estimator="ms", alpha=2.0, alpha_neg=0.5, backend="reference").double()
    w_pos, w_neg = module.scales()
    assert float(w_pos.detach()) == pytest.approx(2.0) and float(w_neg.detach()) == pytest.approx(0.5)
    hy, hb = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    bias, groups = labels((), 10), labels((), 10, classes=2, seed=1)
    value = module(hy, hb, bias, groups=groups)
    u, v = module.head_y(hy), module.head_b(hb)
    expected = ck.cs_mutual_information(
        u, v, bias, alpha=2.0, alpha_neg=0.5, tau_y=10.0, tau_b=10.0, groups=groups, estimator="ms", backend="reference"
    )
    assert torch.allclose(value, expected)
    optimiser = torch.optim.SGD(module.parameters(), lr=0.5)
    for _ in range(20):
        optimiser.zero_grad()
        (-module(hy, hb, bias, groups=groups)).backward()
        assert module.log_alpha.grad.abs() > 0 and module.log_alpha_neg.grad.abs() > 0
        optimiser.step()
        assert all(float(w.detach()) > 0 for w in module.scales())
    with pytest.raises(ValueError, match="alpha_neg applies to estimator='ms'"):
        ck.CrossSampleMI((4, 4), alpha_neg=1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ck.CrossSampleMI((4, 4), estimator="ms", alpha=0.0)
