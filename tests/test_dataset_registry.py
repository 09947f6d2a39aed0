"""One place per dataset: a spec registered in ``python.data.registry`` gives the run config its settings, the train
and postprocess CLIs their flags and help, and a run its data and network, with nothing else to edit."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from python import config as cfg
from python import train as train_cli
from python.data.registry import DATASETS
from python.flags import Flag, Setting

ROOT = Path(__file__).resolve().parents[1]

# registers a toy table before anything reads the registry, then asks the CLI about it and trains on it
TOY_DATASET = textwrap.dedent('''
    import sys

    import torch

    from python.data.base import DataBundle, Split
    from python.data.registry import DATASETS
    from python.data.spec import DatasetSpec
    from python.flags import Flag, Setting
    from python.models import ModelSpec, dense_features


    def toy_split(n, noise, seed):
        gen = torch.Generator().manual_seed(seed)
        bias = torch.randint(0, 2, (n,), generator=gen)
        y = ((bias + noise * torch.randn(n, generator=gen)) > 0.5).long()
        x = torch.cat([y[:, None] + torch.randn(n, 1, generator=gen), bias[:, None].float()], 1)
        return Split((x,), y, bias[:, None])


    def load_toy(config):
        splits = {name: toy_split(n, config.toy_noise, seed) for seed, (name, n) in
                  enumerate((("train", 64), ("val", 32), ("test", 32)))}
        return DataBundle("toy", "simulated", "a toy table", splits, 2, (2,), ("b",))


    DATASETS["toy"] = DatasetSpec(
        name="toy", summary="a toy table of the registry's test", load=load_toy,
        model=ModelSpec(branch=8, target=(8,), bias=(8,), estimator=(8, 8)), features=dense_features,
        defaults={"lambda_": 3.0, "pretrain_epochs": 1, "epochs": 1, "bias_epochs": 1, "estimator_epochs": 1},
        settings=(Setting("toy_noise", float, 0.5, Flag("toy: the label noise of the toy table")),),
    )

    from python import train

    help_text = " ".join(train.parser().format_help().split())
    assert "--toy-noise X" in help_text and "toy: the label noise of the toy table" in help_text, help_text
    assert "toy: a toy table of the registry's test" in help_text and "toy 3" in help_text, help_text
    from python import postprocess  # its baseline takes every dataset setting too

    assert postprocess.data_settings(postprocess.parser().parse_args(["--toy-noise", "0.25"])) == {"toy_noise": 0.25}
    config, _ = train.settings(["--dataset", "toy", "--toy-noise", "0.25"])
    assert (config.toy_noise, config.lambda_, config.epochs) == (0.25, 3.0, 1), config
    metrics = train.main(["--dataset", "toy", "--method", "csad", "--batch-size", "16", "--k-inner", "1",
                          "--no-baseline", "--no-progress", "--out", sys.argv[1]])
    assert metrics["dataset"] == "toy" and 0 <= metrics["metrics"]["test"]["auc"] <= 1, metrics
    print("toy ok")
''')


def test_a_dataset_registered_in_one_place_gets_its_flags_help_defaults_and_trains(tmp_path):
    done = subprocess.run([sys.executable, "-c", TOY_DATASET, str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and "toy ok" in done.stdout, done.stderr[-3000:]


def test_every_dataset_setting_is_a_config_field_with_a_documented_flag():
    help_text = train_cli.parser().format_help()
    fields = {f.name for f in dataclasses.fields(cfg.TrainConfig)}
    for spec in DATASETS.values():
        for setting in spec.settings:
            assert setting.name in fields
            assert train_cli.flag_name(setting.name) in help_text
            if setting.flag.help:
                assert setting.flag.help.split("(")[0].strip() in " ".join(help_text.split()), setting.name
        assert f"{spec.name}: {spec.summary}" in " ".join(help_text.split())


def test_data_root_and_backend_help_come_from_the_registries():
    import csad_kernels

    help_text = " ".join(train_cli.parser().format_help().split())
    with_root = [spec for spec in DATASETS.values() if spec.data_root]
    assert {spec.name for spec in with_root} == {"mpower", "adult", "colored_mnist", "celeba", "imdb"}
    for spec in with_root:
        assert f"{spec.name}: {spec.data_root}" in help_text
    assert ", ".join(("auto", *csad_kernels.BACKENDS)) in help_text


def test_a_setting_several_datasets_read_has_one_flag_with_each_datasets_help():
    merged = cfg.dataset_settings()
    assert merged["split"].flag.help == ("Adult: which of the 10 random 80/20 splits (0-9, default 0); csv: the "
                                         "seed (0-9) of the random 70/15/15 train/val/test split")
    assert merged["target"].flag.help.startswith("CelebA: target attribute") and "; csv: the target" in (
        merged["target"].flag.help)
    assert merged["image_size"].flag.help.count("CelebA, IMDB") == 1  # declared by both, said once


def test_dataset_defaults_come_from_the_spec():
    assert cfg.resolve({"dataset": "adult"}).lambda_ == DATASETS["adult"].defaults["lambda_"] == 10.0
    assert cfg.resolve({"dataset": "celeba"}).target == "Blond_Hair"
    assert cfg.resolve({"dataset": "csv", "csv": "t.csv", "target": "y", "bias": "b"}).bias == "b"


@pytest.mark.parametrize("given, message", [
    ({"dataset": "csv"}, "dataset csv needs --csv FILE"),
    ({"sigma2": 2.0}, "sigma2 must lie in"),
    ({"split": 10}, "split must be an int in 0..9"),
    ({"bias": "age"}, "bias must be gender, race or both"),
    ({"dataset": "imdb", "train_on": "EB3"}, "train_on must be EB1 or EB2"),
])
def test_the_checks_of_the_dataset_settings_still_refuse_bad_values(given, message):
    with pytest.raises(ValueError, match=message):
        cfg.resolve(given)


def test_a_shared_setting_says_each_datasets_help_once_and_must_agree_on_type_and_default():
    def declared(help_text: str, default: int = 0) -> Setting:
        return Setting("seed_of_split", int, default, Flag(help_text))

    merged = cfg.merged_setting([declared("A: its split"), declared(""), declared("B: its seed"),
                                 declared("A: its split")])
    assert merged.flag.help == "A: its split; B: its seed"
    with pytest.raises(TypeError, match="'seed_of_split' with different types or defaults"):
        cfg.merged_setting([declared("A"), declared("B", default=1)])
