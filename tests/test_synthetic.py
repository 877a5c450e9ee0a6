"""Synthetic data (data/synthetic.py): draws that depend on the seed only, the val split, prepare
and load, the Bayes reference."""

from __future__ import annotations

import pytest
import torch

from soteacher import data as data_mod
from soteacher.data import DataError
from soteacher.data.synthetic import bayes_reference, generate


def test_synthetic_data_depend_on_the_seed_only(tiny_config):
    cfg = tiny_config["data"]["synthetic"]
    torch.manual_seed(123)
    a = generate(cfg)
    torch.manual_seed(456)  # the global RNG must not matter
    b = generate(cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = generate({**cfg, "seed": cfg["seed"] + 1})
    assert not torch.equal(a["train_images"], c["train_images"])


def _rows(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


def test_synthetic_val_split_is_a_third_draw_that_leaves_train_and_test_unchanged(tiny_config):
    cfg = tiny_config["data"]["synthetic"]
    plain, with_val = generate(cfg), generate(cfg, val_size=12)
    assert set(with_val) - set(plain) == {"val_images", "val_labels", "val_pstar"}
    assert all(torch.equal(plain[k], with_val[k]) for k in plain)  # train and test byte for byte
    assert with_val["val_images"].shape == (12, *plain["train_images"].shape[1:])
    assert with_val["val_pstar"].shape == (12, cfg["num_classes"])
    assert not _rows(with_val["val_images"]) & (_rows(plain["train_images"]) | _rows(plain["test_images"]))
    assert torch.equal(generate(cfg, val_size=12)["val_images"], with_val["val_images"])


def test_synthetic_prepare_and_load_the_val_split(tiny_config, tmp_path):
    data_cfg = {**tiny_config["data"], "val_size": 10}
    manifest = data_mod.prepare(data_cfg, tmp_path)
    assert {s: manifest["splits"][s]["samples"] for s in ("train", "test", "val")} == {"train": 64, "test": 32,
                                                                                       "val": 10}
    for key in ("bayes_acc", "expected_max_pstar"):
        assert set(manifest["reference"][key]) == {"train", "test", "val"}
        assert all(0 < v <= 100 for v in manifest["reference"][key].values())
    data = data_mod.load(data_cfg, tmp_path, torch.device("cpu"))
    assert len(data.val) == 10 and data.val.pstar.shape == (10, 4)
    ref = bayes_reference(data.val.pstar, data.val.labels)
    assert {k: manifest["reference"][k]["val"] for k in ref} == ref
    plain_cfg = {**data_cfg, "val_size": 0}
    plain_manifest = data_mod.prepare(plain_cfg, tmp_path / "plain")
    assert "val" not in plain_manifest["splits"] and set(plain_manifest["reference"]["bayes_acc"]) == {"train", "test"}
    plain = data_mod.load(plain_cfg, tmp_path / "plain", torch.device("cpu"))
    assert plain.val is None
    # the val split changes neither train nor the normalisation (computed from train only)
    assert torch.equal(plain.train.images, data.train.images) and torch.equal(plain.mean, data.mean)
    with pytest.raises(DataError, match=r"has 10 validation samples, data.val_size is 3"):
        data_mod.load({**data_cfg, "val_size": 3}, tmp_path, torch.device("cpu"))


def test_bayes_reference_by_hand():
    pstar = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    labels = torch.tensor([0, 1, 1])  # argmax p* = 0, 2, 1: right, wrong, right
    ref = bayes_reference(pstar, labels)
    assert ref["bayes_acc"] == pytest.approx(100 * 2 / 3)
    assert ref["expected_max_pstar"] == pytest.approx(100 * (0.7 + 0.6 + 0.5) / 3)


def test_same_class_prob_zero_is_the_data_without_it_and_one_gives_every_image_one_home_class(tiny_config):
    cfg = {**tiny_config["data"]["synthetic"], "num_classes": 3, "num_features": 6, "features_per_image": 2,
           "feature_purity_min": 0.7}
    plain = generate(cfg)
    assert all(torch.equal(plain[k], v) for k, v in generate({**cfg, "same_class_prob": 0.0}).items())
    coherent = generate({**cfg, "same_class_prob": 1.0})
    # two features of one home class: p*(x) puts at least the smaller purity (≥ feature_purity_min) on that class
    # (float32 mean of two values in [0, 1]: rounding below 1e-6)
    top = coherent["train_pstar"].max(1).values
    assert bool((top >= cfg["feature_purity_min"] - 1e-6).all())
    assert top.mean() > plain["train_pstar"].max(1).values.mean()


def test_same_class_prob_needs_enough_features_per_home_class(tiny_config):
    cfg = {**tiny_config["data"]["synthetic"], "num_classes": 4, "num_features": 6, "features_per_image": 2,
           "same_class_prob": 0.5}
    with pytest.raises(ValueError, match="features per home class"):
        generate(cfg)
