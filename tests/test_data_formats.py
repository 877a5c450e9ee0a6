"""Real data formats: small files fabricated in the exact distributed layouts, read back and verified.

Each loader is exercised twice: with expectations scaled to the fabricated copy (it must read it exactly),
and with the published expectations (it must refuse the copy with a message naming the file and what
was expected).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from soteacher import data as data_mod
from soteacher.data import DATASETS, DataError, cifar100, fashion_mnist, imagenet, tiny_imagenet

REAL_FASHION = Path(fashion_mnist.DEFAULT_ROOT)


# ---------------------------------------------------------------- CIFAR-100 (python pickles)

def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4, classes: int = 2, seed: int = 0) -> dict:
    """A cifar-100-python/ folder as the archive unpacks, written like the original (protocol 2, byte keys)."""
    rng = np.random.default_rng(seed)
    folder = root / cifar100.FOLDER
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = [int(i % classes) for i in range(n)]
        entry = {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": b"batch 1 of 1",
                 b"fine_labels": labels, b"coarse_labels": [0] * n, b"data": images.reshape(n, 3072)}
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
        out[split] = (images, labels)
    meta = {b"fine_label_names": [f"class{i}".encode() for i in range(classes)], b"coarse_label_names": [b"all"]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


SMALL_CIFAR = cifar100.Expect(num_classes=2, samples=None, md5=None)


def test_cifar100_reads_the_pickle_layout(tmp_path):
    written = write_cifar100(tmp_path)
    for split in ("train", "test"):
        images, labels = cifar100.load_split(tmp_path, split, SMALL_CIFAR)
        assert images.dtype == torch.uint8 and images.shape == (len(written[split][1]), 3, 32, 32)
        assert torch.equal(images, torch.from_numpy(written[split][0]))  # R, G, B planes in order
        assert labels.tolist() == written[split][1]


def test_cifar100_published_expectations_refuse_a_small_copy(tmp_path):
    write_cifar100(tmp_path)
    with pytest.raises(DataError, match=r"cifar-100-python/meta: expected 100 fine label names, file has 2"):
        DATASETS["cifar100"].load_split(tmp_path, "train")


def test_cifar100_checks_the_published_md5(tmp_path):
    write_cifar100(tmp_path, classes=100)
    expect = dataclasses.replace(cifar100.PUBLISHED, samples=None)
    with pytest.raises(DataError, match=r"cifar-100-python/meta: md5 [0-9a-f]{32} differs from the published "
                                        r"7973b15100ade9c7d40fb424638fde48"):
        cifar100.load_split(tmp_path, "train", expect)


def test_cifar100_truncated_and_misplaced_files(tmp_path):
    write_cifar100(tmp_path)
    train = tmp_path / cifar100.FOLDER / "train"
    train.write_bytes(train.read_bytes()[:47])
    with pytest.raises(DataError, match=r"cifar-100-python/train: not a readable CIFAR-100 pickle .*file has 47 bytes"):
        cifar100.load_split(tmp_path, "train", SMALL_CIFAR)
    # files unpacked one level too high: say so
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "train").write_bytes(b"x")
    with pytest.raises(DataError, match=r"flat/cifar-100-python/meta.*data.root must be the folder that contains"):
        cifar100.load_split(flat, "train", SMALL_CIFAR)
    with pytest.raises(DataError, match=r"CIFAR-100 file not found: .*nowhere/cifar-100-python/meta.*data.download"):
        cifar100.load_split(tmp_path / "nowhere", "train", SMALL_CIFAR)


def test_cifar100_pickles_cannot_run_code(tmp_path):
    write_cifar100(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / cifar100.FOLDER / "meta").write_bytes(pickle.dumps({b"fine_label_names": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"meta: not a readable CIFAR-100 pickle .*refusing to load __builtin__.print"):
        cifar100.load_split(tmp_path, "train", SMALL_CIFAR)


def test_cifar100_wrong_shapes_are_named(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / cifar100.FOLDER / "test"
    entry = pickle.loads(path.read_bytes())
    entry[b"data"] = entry[b"data"][:, :1024]
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError, match=r"cifar-100-python/test: expected 4 images of 3x32x32 uint8 .*uint8 4x1024"):
        cifar100.load_split(tmp_path, "test", SMALL_CIFAR)


# ---------------------------------------------------------------- Fashion-MNIST (IDX)

def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding, byte by byte: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, n_train: int = 5, n_test: int = 3, gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            raw = idx_bytes(array)
            name = f"{prefix}-{kind}"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (root / name).write_bytes(raw)
        out[split] = (images, labels)
    return out


SMALL_FASHION = fashion_mnist.Expect(num_classes=10, samples=None, md5=None)


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    written = write_idx_set(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = fashion_mnist.load_split(tmp_path, split, SMALL_FASHION)
        grey, want_labels = written[split]
        assert images.shape == (len(grey), 3, 28, 28) and images.dtype == torch.uint8
        for c in range(3):  # the grey channel replicated
            assert torch.equal(images[:, c], torch.from_numpy(grey))
        assert labels.dtype == torch.int64 and labels.tolist() == want_labels.tolist()


def test_fashion_mnist_torchvision_layout(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw")
    images, _ = fashion_mnist.load_split(tmp_path, "test", SMALL_FASHION)
    assert images.shape == (3, 3, 28, 28)


def test_fashion_mnist_truncated_file_is_named(tmp_path):
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:47])
    with pytest.raises(DataError) as err:
        DATASETS["fashion_mnist"].load_split(tmp_path, "train")
    assert str(err.value).startswith(f"{path}: expected 60000 images of 28x28, file has 47 bytes")
    # a header that promises more than the file holds
    path.write_bytes(idx_bytes(np.zeros((60000, 28, 28), np.uint8))[:16 + 784 * 10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: expected 60000 images of 28x28, file has 7856 "
                                        r"bytes \(the header's 60000x28x28 needs 47040016\)"):
        DATASETS["fashion_mnist"].load_split(tmp_path, "train")


def test_fashion_mnist_wrong_files(tmp_path):
    written = write_idx_set(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: not a complete gzip file .*file has 40 bytes"):
        fashion_mnist.load_split(tmp_path, "test", SMALL_FASHION)
    # labels file given where images belong
    path.write_bytes(gzip.compress(idx_bytes(written["test"][1])))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: expected an unsigned-byte IDX file with 3 "
                                        r"dimensions \(magic 0x00000803\), file starts with 0x00000801"):
        fashion_mnist.load_split(tmp_path, "test", SMALL_FASHION)
    # a well-formed copy that is not the published data
    write_idx_set(tmp_path / "other", n_train=60000, n_test=10)
    with pytest.raises(DataError, match=r"other/train-images-idx3-ubyte: md5 [0-9a-f]{32} differs from the "
                                        r"published f4a8712d7a061bf5bd6d2ca38dc4d50a"):
        DATASETS["fashion_mnist"].load_split(tmp_path / "other", "train")


def test_fashion_mnist_missing_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        fashion_mnist.load_split(tmp_path, "train")
    msg = str(err.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in msg and "FashionMNIST/raw" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_real_fashion_mnist_files():
    if not REAL_FASHION.is_dir():
        reason = f"{REAL_FASHION} not found (apt-get install dataset-fashion-mnist)"
        print(f"skipped: {reason}")
        pytest.skip(reason)
    train_images, train_labels = DATASETS["fashion_mnist"].load_split(REAL_FASHION, "train")  # checks the md5s
    test_images, test_labels = DATASETS["fashion_mnist"].load_split(REAL_FASHION, "test")
    assert train_images.shape == (60000, 3, 28, 28) and test_images.shape == (10000, 3, 28, 28)
    assert torch.bincount(train_labels).tolist() == [6000] * 10
    assert torch.bincount(test_labels).tolist() == [1000] * 10
    grey = train_images[:, 0].float() / 255
    # the constants have 4 decimals (±5e-5); float32 sums over 47 M pixels add ~1e-6
    assert grey.mean().item() == pytest.approx(fashion_mnist.MEAN[0], abs=1e-4)
    assert grey.std().item() == pytest.approx(fashion_mnist.STD[0], abs=1e-4)


# ---------------------------------------------------------------- Tiny-ImageNet (tiny-imagenet-200 tree)

WNIDS = ["n01443537", "n01629819", "n01641577"]


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (64, 64), grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


def write_tiny_imagenet(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / tiny_imagenet.FOLDER
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")  # not sorted, as in the real file
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))
    for w in WNIDS:
        for k in range(per_class):
            write_jpeg(base / "train" / w / "images" / f"{w}_{k}.JPEG", rng, grey=(w == WNIDS[1] and k == 0))
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(f"{w}_{k}.JPEG\t0\t0\t63\t63\n"
                                                                  for k in range(per_class)))
    lines = []
    for k, w in enumerate([WNIDS[2], WNIDS[0], WNIDS[1]]):
        write_jpeg(base / "val" / "images" / f"val_{k}.JPEG", rng)
        lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    return base


SMALL_TINY = tiny_imagenet.Expect(num_classes=3, per_class_train=2, test_samples=3)


def test_tiny_imagenet_reads_the_tree(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    for root in (tmp_path, base):  # the folder itself or its parent
        images, labels = tiny_imagenet.load_split(root, "train", SMALL_TINY)
        assert images.shape == (6, 3, 64, 64) and images.dtype == torch.uint8
        assert labels.tolist() == [0, 0, 1, 1, 2, 2]  # sorted wnid order
    first = np.array(Image.open(base / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_0.JPEG").convert("RGB"))
    assert torch.equal(images[0], torch.from_numpy(first).permute(2, 0, 1))
    grey = images[2]  # the grey JPEG becomes three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    images, labels = tiny_imagenet.load_split(tmp_path, "test", SMALL_TINY)
    assert images.shape == (3, 3, 64, 64)
    assert labels.tolist() == [2, 0, 1]  # val_0, val_1, val_2 from val_annotations.txt


def test_tiny_imagenet_layout_errors(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    with pytest.raises(DataError, match=r"tiny-imagenet-200/wnids.txt: expected 200 distinct class ids, file has 3"):
        DATASETS["tiny_imagenet"].load_split(tmp_path, "train")
    (base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_1.JPEG").unlink()
    with pytest.raises(DataError, match=rf"train/{WNIDS[1]}/images: expected 2 \*.JPEG images, found 1"):
        tiny_imagenet.load_split(tmp_path, "train", SMALL_TINY)
    bad = base / "val" / "images" / "val_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match=r"val/images/val_1.JPEG: not a readable image"):
        tiny_imagenet.load_split(tmp_path, "test", SMALL_TINY)
    write_jpeg(bad, np.random.default_rng(1), size=(32, 32))
    with pytest.raises(DataError, match=r"val/images/val_1.JPEG: expected a 64x64 image, file has 32x32"):
        tiny_imagenet.load_split(tmp_path, "test", SMALL_TINY)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:1: expected '<file>\\t<wnid>\\t<box>'"):
        tiny_imagenet.load_split(tmp_path, "test", SMALL_TINY)
    with pytest.raises(DataError, match=r"Tiny-ImageNet not found: no wnids.txt in .*tiny-imagenet-200.zip"):
        tiny_imagenet.load_split(tmp_path / "empty", "train", SMALL_TINY)


# ---------------------------------------------------------------- ImageNet (class folders, streamed)

def write_imagenet(root: Path, train_per_class: int = 3, val_per_class: int = 1, seed: int = 0,
                   sizes=((40, 30), (50, 64), (33, 33))) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for w in WNIDS:
            for k in range(count):
                write_jpeg(root / split / w / f"{w}_{k}.JPEG", rng, size=sizes[k % len(sizes)])
    return root


SMALL_IMAGENET = imagenet.Expect(num_classes=3, samples={"train": 9, "test": 3})


def test_imagenet_streams_batches_like_data(tmp_path):
    write_imagenet(tmp_path)
    data = imagenet.open_stream("imagenet", tmp_path, {}, torch.device("cpu"), 3, imagenet.MEAN, imagenet.STD,
                                size=16, resize=18, expect=SMALL_IMAGENET, workers=0)
    assert isinstance(data, data_mod.Data)
    assert data.image_shape == (3, 16, 16) and len(data.train) == 9 and len(data.test) == 3
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.train.images.device == torch.device("cpu")
    seen = []
    for x, y, idx in data.train_batches(4, torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
        assert torch.equal(y, data.train.labels[idx])
        seen += idx.tolist()
    assert len(seen) == len(set(seen)) == 8 and set(seen) <= set(range(9))  # the trailing batch of one is dropped
    batches = list(data.eval_batches(data.test, 2))
    assert [y.tolist() for _, y in batches] == [[0, 1], [2]]
    assert batches[0][0].shape == (2, 3, 16, 16)


def test_imagenet_layout_errors(tmp_path):
    write_imagenet(tmp_path)
    with pytest.raises(DataError, match=r"/train: expected 1000 class folders, found 3"):
        DATASETS["imagenet"].files(tmp_path, "train")
    with pytest.raises(DataError, match=r"/train: expected 8 images in 3 class folders, found 9"):
        imagenet.samples(tmp_path, "train", imagenet.Expect(num_classes=3, samples={"train": 8}))
    loose = tmp_path / "loose"
    write_imagenet(loose, val_per_class=0)
    for w in WNIDS:
        (loose / "val" / w).rmdir() if (loose / "val" / w).exists() else None
    write_jpeg(loose / "val" / "ILSVRC2012_val_00000001.JPEG", np.random.default_rng(0))
    with pytest.raises(DataError, match=r"loose/val: expected the same 3 class folders .*1 loose images"):
        imagenet.samples(loose, "test", SMALL_IMAGENET)
    with pytest.raises(DataError, match=r"ImageNet folder not found: .*nowhere/train.*image-net.org"):
        imagenet.samples(tmp_path / "nowhere", "train", SMALL_IMAGENET)


# ---------------------------------------------------------------- prepare / load through the registry

def test_readers_check_the_published_counts_of_their_registry_entry():
    for reader, name in ((cifar100, "cifar100"), (fashion_mnist, "fashion_mnist"), (imagenet, "imagenet")):
        spec = DATASETS[name]
        assert reader.PUBLISHED.num_classes == spec.num_classes, name
        assert (reader.PUBLISHED.samples["train"], reader.PUBLISHED.samples["test"]) == spec.full_size, name
        assert (reader.MEAN, reader.STD) == (spec.mean, spec.std), name
    assert cifar100.PUBLISHED.samples == {"train": 50_000, "test": 10_000}
    assert fashion_mnist.PUBLISHED.samples == {"train": 60_000, "test": 10_000}
    assert imagenet.PUBLISHED.samples == {"train": 1_281_167, "test": 50_000}
    tiny = tiny_imagenet.PUBLISHED
    assert (tiny.num_classes, tiny.per_class_train, tiny.test_samples, tiny.size) == (200, 500, 10_000, 64)



def _small_registry(monkeypatch):
    small = {
        "cifar100": dict(load_split=functools.partial(cifar100.load_split, expect=SMALL_CIFAR)),
        "fashion_mnist": dict(load_split=functools.partial(fashion_mnist.load_split, expect=SMALL_FASHION)),
        "tiny_imagenet": dict(load_split=functools.partial(tiny_imagenet.load_split, expect=SMALL_TINY),
                              files=functools.partial(tiny_imagenet.files, expect=SMALL_TINY)),
    }
    for name, changes in small.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], **changes))


@pytest.mark.parametrize("name, writer, train_n", [
    ("cifar100", write_cifar100, 6), ("fashion_mnist", write_idx_set, 5), ("tiny_imagenet", write_tiny_imagenet, 6)])
def test_prepare_writes_manifest_and_load_matches(tmp_path, monkeypatch, name, writer, train_n):
    _small_registry(monkeypatch)
    raw = tmp_path / "raw"
    writer(raw)
    cfg = {"dataset": name, "root": str(raw), "download": False, "train_limit": None, "test_limit": None}
    out = tmp_path / "prepared"
    manifest = data_mod.prepare(cfg, out)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    train = manifest["splits"]["train"]
    assert train["samples"] == train["available"] == train_n
    assert train["image_shape"] == list(DATASETS[name].image_shape)
    assert train["files"]["count"] >= 2 and train["files"]["bytes"] > 0
    assert len(train["images_sha256"]) == 16
    data = data_mod.load(cfg, out, torch.device("cpu"))
    assert data.num_classes == DATASETS[name].num_classes and data.image_shape == DATASETS[name].image_shape
    assert len(data.train) == train_n and data.train.images.dtype == torch.uint8
    x, y, idx = next(data.train_batches(4, torch.Generator().manual_seed(0)))
    assert x.shape == (4, *DATASETS[name].image_shape) and torch.equal(y, data.train.labels[idx])
    # limits: a fixed subset; a changed subset no longer matches the manifest
    limited = {**cfg, "train_limit": 3}
    with pytest.raises(DataError, match=r"differ from those recorded in .*manifest.json"):
        data_mod.load(limited, out, torch.device("cpu"))
    assert data_mod.prepare(limited, out)["splits"]["train"]["samples"] == 3
    assert len(data_mod.load(limited, out, torch.device("cpu")).train) == 3


def _source_indices(images: torch.Tensor, grey: np.ndarray) -> list[int]:
    """Where each loaded (RGB-replicated) image sits in the fabricated files: the random images are distinct."""
    where = {img.tobytes(): i for i, img in enumerate(grey)}
    return [where[img[0].numpy().tobytes()] for img in images]


def test_val_split_is_held_out_of_train(tmp_path, monkeypatch):
    _small_registry(monkeypatch)
    raw = tmp_path / "raw"
    grey, _ = write_idx_set(raw, n_train=12)["train"]
    cfg = {"dataset": "fashion_mnist", "root": str(raw), "train_limit": None, "test_limit": None,
           "val_size": 4, "val_seed": 0}
    manifest = data_mod.prepare(cfg, tmp_path / "prepared")
    val = manifest["splits"]["val"]
    assert (manifest["splits"]["train"]["samples"], val["samples"], val["available"]) == (8, 4, 12)
    assert val["drawn_from"] == "train" and val["files"] == manifest["splits"]["train"]["files"]
    data = data_mod.load(cfg, tmp_path / "prepared", torch.device("cpu"))
    held, kept = _source_indices(data.val.images, grey), _source_indices(data.train.images, grey)
    assert held == sorted(held) and kept == sorted(kept)  # both in file order
    assert not set(held) & set(kept) and sorted(held + kept) == list(range(12))
    assert held == sorted(torch.randperm(12, generator=torch.Generator().manual_seed(0))[:4].tolist())
    assert data.val.labels.tolist() == [i % 10 for i in held] and data.val.pstar is None
    # the same seed draws the same split; another seed another one, which the manifest no longer matches
    assert data_mod.prepare(cfg, tmp_path / "again")["splits"]["val"] == val
    other = {**cfg, "val_seed": 1}
    with pytest.raises(DataError, match=r"differ from those recorded in .*manifest.json"):
        data_mod.load(other, tmp_path / "prepared", torch.device("cpu"))
    data_mod.prepare(other, tmp_path / "other")
    assert _source_indices(data_mod.load(other, tmp_path / "other", torch.device("cpu")).val.images, grey) != held
    # held out after train_limit: from the limited subset
    limited = data_mod.prepare({**cfg, "train_limit": 6}, tmp_path / "limited")["splits"]
    assert (limited["train"]["samples"], limited["val"]["samples"], limited["val"]["available"]) == (2, 4, 6)
    with pytest.raises(DataError, match=r"data.val_size=6 must be smaller than the 6 training samples"):
        data_mod.prepare({**cfg, "train_limit": 6, "val_size": 6}, tmp_path / "too_big")


def test_val_split_is_refused_for_streamed_imagenet(tmp_path):
    cfg = {"dataset": "imagenet", "root": str(tmp_path), "train_limit": None, "test_limit": None, "val_size": 1}
    for call in (lambda: data_mod.prepare(cfg, tmp_path / "prepared"),
                 lambda: data_mod.load(cfg, tmp_path / "prepared", torch.device("cpu"))):
        with pytest.raises(DataError, match=r"data.val_size is not supported for imagenet \(streamed\)"):
            call()


def test_prepare_imagenet_streams(tmp_path, monkeypatch):
    write_imagenet(tmp_path / "raw")

    def small_stream(name, root, data_cfg, device):
        return imagenet.open_stream(name, root, data_cfg, device, 3, imagenet.MEAN, imagenet.STD, size=16,
                                    resize=18, expect=SMALL_IMAGENET, workers=0)

    monkeypatch.setitem(DATASETS, "imagenet", dataclasses.replace(DATASETS["imagenet"], open_stream=small_stream))
    cfg = {"dataset": "imagenet", "root": str(tmp_path / "raw"), "train_limit": 6, "test_limit": None}
    manifest = data_mod.prepare(cfg, tmp_path / "prepared")
    assert manifest["splits"]["train"]["samples"] == 6 and manifest["splits"]["test"]["files"]["count"] == 3
    data = data_mod.load(cfg, tmp_path / "prepared", torch.device("cpu"))
    assert len(data.train) == 6 and data.image_shape == (3, 16, 16)


def test_real_data_needs_a_root():
    with pytest.raises(DataError, match=r"data.root is not set for data set 'cifar100': set it to the folder that "
                                        r"contains cifar-100-python/"):
        data_mod.load({"dataset": "cifar100", "root": None}, Path("unused"), torch.device("cpu"))
