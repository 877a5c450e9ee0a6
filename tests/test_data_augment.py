"""Batch augmentation on the device: torchvision RandomCrop(size, padding) + flip semantics, per image, and
the same batches from the streaming (ImageNet-style) path as from the in-memory path."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms import functional as TF

from soteacher.data import Data, Split, imagenet
from soteacher.data.augment import random_crop_flip
from soteacher.data.common import decode_many


def test_identical_images_get_different_crops_and_flips():
    image = torch.randint(1, 256, (1, 3, 12, 12), dtype=torch.uint8)
    out = random_crop_flip(image.expand(32, -1, -1, -1), 4, True, torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 16


def _explicit(image: torch.Tensor, padding: int, top: int, left: int, flip: bool) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding) for given parameters (zero pad, crop), then hflip."""
    h, w = image.shape[-2:]
    out = TF.crop(TF.pad(image, [padding]), top, left, h, w)
    return TF.hflip(out) if flip else out


@pytest.mark.parametrize("padding", [2, 4])
def test_crop_is_torchvision_random_crop_per_image(padding):
    n, h, w = 300, 8, 10
    images = torch.randint(1, 256, (n, 3, h, w), dtype=torch.uint8)  # no zeros: padding is recognisable
    out = random_crop_flip(images, padding, True, torch.Generator().manual_seed(1))
    found = []
    candidates = list(itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)))
    for i in range(n):
        match = [c for c in candidates if torch.equal(out[i], _explicit(images[i], padding, *c))]
        assert len(match) == 1, f"image {i}: output is no torchvision crop with offsets in [0, {2 * padding}]"
        found.append(match[0])
    tops, lefts, flips = zip(*found)
    assert set(tops) == set(lefts) == set(range(2 * padding + 1))  # every offset in [0, 2p] occurs, no other
    assert 0.4 < sum(flips) / n < 0.6  # ±0.1 = 3.5 σ of a fair coin's share over 300 (σ = 0.029); seeded


def test_no_padding_no_flip_is_identity():
    images = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, 0, False, torch.Generator().manual_seed(0)), images)


def _folder_tree(root: Path, size: int = 16, per_class: int = 5) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 2)):
        for c in range(3):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{k}.JPEG", quality=95)


EXPECT = imagenet.Expect(num_classes=3, samples=None)


def _stream(root: Path, workers: int, rrc: bool, padding: int = 4) -> imagenet.StreamingData:
    return imagenet.open_stream("folders", root, {}, torch.device("cpu"), 3, imagenet.MEAN, imagenet.STD,
                                crop_padding=padding, flip=True, size=16, resize=16, random_resized_crop=rrc,
                                expect=EXPECT, workers=workers)


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_and_in_memory_batches_are_identical(tmp_path, workers):
    _folder_tree(tmp_path)
    stream = _stream(tmp_path, workers, rrc=False)
    images = decode_many(stream.train.paths, (16, 16), threads=1)
    memory = Data("folders", 3, Split(images, stream.train.labels.clone(), None),
                  Split(decode_many(stream.test.paths, (16, 16), threads=1), stream.test.labels.clone(), None),
                  stream.mean, stream.std, crop_padding=4, flip=True)
    for augment in (True, False):
        a = list(stream.train_batches(4, torch.Generator().manual_seed(3), augment))
        b = list(memory.train_batches(4, torch.Generator().manual_seed(3), augment))
        assert len(a) == len(b) == 4  # 15 samples: 4 + 4 + 4 + 3
        for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
            assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)
    for (xa, ya), (xb, yb) in zip(stream.eval_batches(stream.test, 4), memory.eval_batches(memory.test, 4)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_random_resized_crop_is_reproducible_and_independent_of_workers(tmp_path):
    _folder_tree(tmp_path, size=24)
    runs = [list(_stream(tmp_path, w, rrc=True, padding=0).train_batches(5, torch.Generator().manual_seed(7)))
            for w in (0, 2, 0)]
    for batches in runs[1:]:
        for (xa, ya, ia), (xb, yb, ib) in zip(runs[0], batches):
            assert torch.equal(xa, xb) and torch.equal(ia, ib) and torch.equal(ya, yb)
    other = list(_stream(tmp_path, 0, rrc=True, padding=0).train_batches(5, torch.Generator().manual_seed(8)))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(runs[0], other))


def test_resized_crop_box_follows_torchvision():
    rng = np.random.default_rng(0)
    boxes = [imagenet.resized_crop_box(500, 375, rng) for _ in range(2000)]
    for top, left, h, w in boxes:
        assert 0 <= top <= 375 - h and 0 <= left <= 500 - w and h > 0 and w > 0
        assert 0.08 * 0.99 <= h * w / (500 * 375) <= 1.0
        assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03
    # the same distribution as torchvision's get_params (area fraction and log aspect ratio): two means of 2000
    # draws, σ of their difference ≈ 0.27 · √(2/2000) = 0.009 and 0.17 · √(2/2000) = 0.005, so 0.03 is ≥ 3.5 σ
    torch.manual_seed(0)
    ref = [RandomResizedCrop.get_params(torch.zeros(3, 375, 500), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(2000)]
    for stat in (lambda b: b[2] * b[3] / (500 * 375), lambda b: math.log(b[3] / b[2])):
        assert np.mean([stat(b) for b in boxes]) == pytest.approx(np.mean([stat(b) for b in ref]), abs=0.03)
    # the fallback of a too-wide image: central crop at the maximum ratio
    assert imagenet.resized_crop_box(1000, 10, np.random.default_rng(0), scale=(0.99, 1.0)) == (0, 493, 10, 13)
