"""The project's ResNet-18: shapes, torchvision-format state dicts (names and shapes), frozen BatchNorm."""

from __future__ import annotations

import logging

import pytest
import torch

from python.resnet import ResNet18, read_state_dict, resnet18


def torchvision_resnet18_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Every key and shape of torchvision's ``resnet18().state_dict()``, written out from its layout."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    n_in = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"layer{stage}.{block}"
            c_in = n_in if block == 0 else width
            shapes[f"{p}.conv1.weight"] = (width, c_in, 3, 3)
            bn(f"{p}.bn1", width)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            if block == 0 and stage > 1:
                shapes[f"{p}.downsample.0.weight"] = (width, n_in, 1, 1)
                bn(f"{p}.downsample.1", width)
        n_in = width
    shapes["fc.weight"] = (num_classes, 512)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def random_torchvision_state(num_classes: int = 1000, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in torchvision_resnet18_shapes(num_classes).items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g)
    return state


def test_state_dict_names_and_shapes_are_torchvisions():
    own = {k: tuple(v.shape) for k, v in ResNet18(1000).state_dict().items()}
    assert own == torchvision_resnet18_shapes()
    assert len(own) == 122


@pytest.mark.parametrize(("size", "batch"), [(224, 2), (64, 3), (32, 2)])
def test_output_shapes(size, batch):
    model = resnet18().eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, 256) and model.out_dim == 256


def test_headless_and_final_relu():
    model = resnet18(None, final_relu=True).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert model.out_dim == 512 and out.shape == (2, 512) and bool((out >= 0).all())
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"expects images \(n, 3, H, W\)"):
        resnet18()(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="num_outputs"):
        resnet18(0)


def test_own_state_dict_round_trips_strict(tmp_path):
    model = resnet18(256)
    torch.save(model.state_dict(), tmp_path / "own.pt")
    again = resnet18(256, weights=tmp_path / "own.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    copy = ResNet18(256)
    copy.load_state_dict(torch.load(tmp_path / "own.pt", weights_only=True), strict=True)


def test_torchvision_file_drops_the_1000_way_fc(tmp_path, caplog):
    state = random_torchvision_state()
    torch.save(state, tmp_path / "resnet18.pth")
    with caplog.at_level(logging.INFO, logger="python.resnet"):
        model = resnet18(256, weights=tmp_path / "resnet18.pth")
    loaded = model.state_dict()
    for k, v in state.items():
        if not k.startswith("fc."):
            assert torch.equal(loaded[k], v), k
    assert loaded["fc.weight"].shape == (256, 512)
    assert "dropped the file's fc (512->1000)" in caplog.text
    # with num_outputs=1000 the ImageNet classifier is kept
    full = resnet18(1000, weights=tmp_path / "resnet18.pth")
    assert torch.equal(full.state_dict()["fc.weight"], state["fc.weight"])


def test_old_file_without_num_batches_tracked_and_ddp_prefix(tmp_path):
    state = {f"module.{k}": v for k, v in random_torchvision_state().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state}, tmp_path / "old.pth")
    model = resnet18(weights=tmp_path / "old.pth")
    assert int(model.state_dict()["bn1.num_batches_tracked"]) == 0
    assert torch.equal(model.state_dict()["conv1.weight"], state["module.conv1.weight"])


def test_key_mismatch_lists_keys(tmp_path):
    state = random_torchvision_state()
    del state["layer1.0.conv1.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*1 missing key\(s\) \[layer1\.0\.conv1\.weight\].*"
                                         r"1 unexpected key\(s\) \[layer5\.0\.conv1\.weight\]"):
        resnet18(weights=tmp_path / "bad.pth")


def test_shape_mismatch_and_bad_files(tmp_path):
    state = random_torchvision_state()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"shape\.pth: 1 tensor\(s\) of the wrong shape: conv1\.weight"):
        resnet18(weights=tmp_path / "shape.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth not found"):
        resnet18(weights=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: cannot be loaded"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth: expected a dict of tensors"):
        read_state_dict(tmp_path / "list.pth")


def test_freeze_bn_keeps_running_stats_and_freezes_affine():
    model = resnet18(16, freeze_bn=True)
    model.train()
    bns = model.batchnorms()
    assert len(bns) == 20 and all(not bn.training for bn in bns)
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    assert model.conv1.weight.requires_grad and model.fc.weight.requires_grad and model.training
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    out = model(torch.randn(4, 3, 32, 32))
    out.sum().backward()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(bn.weight.grad is None for bn in bns) and model.conv1.weight.grad is not None
    # an outer module's train() reaches the override too
    wrapper = torch.nn.Sequential(model).train()
    assert all(not bn.training for bn in bns) and wrapper.training


def test_unfrozen_bn_updates_running_stats():
    model = resnet18(16).train()
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, model.bn1.running_mean) and model.bn1.training
