"""Tiny-ImageNet in its distributed ``tiny-imagenet-200`` layout; the labelled val split serves as test.

    <root>/wnids.txt                           200 class ids, one a line
    <root>/train/<wnid>/images/*.JPEG          500 64×64 images per class
    <root>/val/images/*.JPEG                   10,000 images
    <root>/val/val_annotations.txt             file<TAB>wnid<TAB>box (one line per val image)

``data.root`` may be the ``tiny-imagenet-200`` folder itself or its parent. Classes are indexed in sorted
wnid order (as torchvision's ImageFolder on ``train/`` would). No per-file checksums are published, so the
checks are the layout, the class and sample counts, and that every image decodes to 64×64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from soteacher.data.common import DataError, decode_many
from soteacher.data.registry import DATASETS

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MEAN, STD = DATASETS["tiny_imagenet"].mean, DATASETS["tiny_imagenet"].std
HOW_TO_GET = f"download {URL} and unzip it so that data.root (or data.root/{FOLDER}) holds wnids.txt, train/ and val/"


@dataclass(frozen=True)
class Expect:
    num_classes: int | None = None  # None: not checked
    per_class_train: int | None = None
    test_samples: int | None = None
    size: int = 64  # image side


def _published() -> Expect:
    spec = DATASETS["tiny_imagenet"]
    train, test = spec.full_size  # type: ignore[misc]
    # 500 training images per class
    return Expect(num_classes=spec.num_classes, per_class_train=train // spec.num_classes, test_samples=test,
                  size=spec.image_shape[-1])  # type: ignore[index, operator]


PUBLISHED = _published()


def base(root: Path) -> Path:
    root = Path(root)
    for candidate in (root, root / FOLDER):
        if (candidate / "wnids.txt").is_file():
            return candidate
    raise DataError(f"Tiny-ImageNet not found: no wnids.txt in {root} or {root / FOLDER}; {HOW_TO_GET}")


def wnids(root: Path, expect: Expect = PUBLISHED) -> list[str]:
    path = base(root) / "wnids.txt"
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if expect.num_classes is not None and len(set(ids)) != expect.num_classes:
        raise DataError(f"{path}: expected {expect.num_classes} distinct class ids, file has {len(set(ids))}")
    return sorted(set(ids))


def samples(root: Path, split: str, expect: Expect = PUBLISHED) -> list[tuple[Path, int]]:
    """(image path, class index) of every sample of ``split``, after checking the layout and counts."""
    folder = base(root)
    classes = wnids(root, expect)
    index = {w: i for i, w in enumerate(classes)}
    out: list[tuple[Path, int]] = []
    if split == "train":
        train = folder / "train"
        if not train.is_dir():
            raise DataError(f"{train}: folder missing; expected train/<wnid>/images/*.JPEG; {HOW_TO_GET}")
        extra = sorted(p.name for p in train.iterdir() if p.is_dir() and p.name not in index)
        if extra:
            raise DataError(f"{train}: class folders {extra[:5]} are not listed in {folder / 'wnids.txt'}")
        for wnid in classes:
            images = train / wnid / "images"
            found = sorted(images.glob("*.JPEG")) if images.is_dir() else []
            if expect.per_class_train is not None and len(found) != expect.per_class_train:
                raise DataError(f"{images}: expected {expect.per_class_train} *.JPEG images, found {len(found)}")
            if not found:
                raise DataError(f"{images}: expected *.JPEG images of class {wnid}, found none")
            out += [(p, index[wnid]) for p in found]
        return out
    images, notes = folder / "val" / "images", folder / "val" / "val_annotations.txt"
    if not notes.is_file() or not images.is_dir():
        raise DataError(f"{notes if not notes.is_file() else images}: missing; expected val/images/*.JPEG and "
                        f"val/val_annotations.txt; {HOW_TO_GET}")
    for number, line in enumerate(notes.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"{notes}:{number}: expected '<file>\\t<wnid>\\t<box>' with a wnid from wnids.txt, "
                            f"got {line!r}")
        out.append((images / parts[0], index[parts[1]]))
    missing = [str(p) for p, _ in out if not p.is_file()]
    if missing:
        raise DataError(f"{notes}: lists {len(missing)} images that are missing, e.g. {missing[0]}")
    listed = {p.name for p, _ in out}
    unlisted = sorted(p.name for p in images.glob("*.JPEG") if p.name not in listed)
    if unlisted:
        raise DataError(f"{images}: {len(unlisted)} images have no line in {notes.name}, e.g. {unlisted[0]}")
    if expect.test_samples is not None and len(out) != expect.test_samples:
        raise DataError(f"{notes}: expected {expect.test_samples} annotated val images, file has {len(out)}")
    return sorted(out)


def files(root: Path, split: str, expect: Expect = PUBLISHED) -> list[Path]:
    folder = base(root)
    extra = [folder / "wnids.txt"] + ([folder / "val" / "val_annotations.txt"] if split == "test" else [])
    return extra + [p for p, _ in samples(root, split, expect)]


def load_split(root: Path, split: str, expect: Expect = PUBLISHED) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 64, 64) (grey JPEGs converted to RGB) and int64 labels."""
    found = samples(root, split, expect)
    images = decode_many([p for p, _ in found], (expect.size, expect.size))
    return images, torch.tensor([label for _, label in found], dtype=torch.int64)
