"""``load``: a prepared data set onto the training device, checked against its manifest."""

from __future__ import annotations

from pathlib import Path

import torch

from soteacher.data import manifest as manifests
from soteacher.data.common import DataError
from soteacher.data.registry import DATASETS
from soteacher.data.splits import raw_root, read_real, refuse_streamed_val, split_names, val_count
from soteacher.data.types import Data, Split


def load(data_cfg: dict, data_dir: Path, device: torch.device) -> Data:
    """Load a prepared data set onto ``device``; errors say where the data was looked for."""
    name = data_cfg["dataset"]
    spec = DATASETS[name]
    if name == "synthetic":
        path = data_dir / manifests.TENSORS_FILE
        if not path.is_file():
            raise DataError(f"prepared synthetic data not found at {path}; run `python -m soteacher prepare-data`")
        tensors = torch.load(path, weights_only=True)
        have = tensors["val_labels"].numel() if "val_labels" in tensors else 0
        if have != val_count(data_cfg):
            raise DataError(f"prepared synthetic data at {path} has {have} validation samples, data.val_size is "
                            f"{val_count(data_cfg)}; run `python -m soteacher prepare-data` again")
    elif spec.open_stream is not None:
        refuse_streamed_val(name, data_cfg)
        return spec.open_stream(name, raw_root(name, data_cfg), data_cfg, device)
    else:
        tensors, _ = read_real(name, data_cfg, raw_root(name, data_cfg))
        manifests.check(data_dir / manifests.MANIFEST_FILE, tensors)
    splits = {
        split: Split(
            tensors[f"{split}_images"].to(device),
            tensors[f"{split}_labels"].to(device),
            tensors[f"{split}_pstar"].to(device) if f"{split}_pstar" in tensors else None,
        )
        for split in split_names(tensors)
    }
    if spec.mean is None:  # from the training split only: val and test stay unseen
        train = splits["train"].images.float() / 255
        mean = tuple(train.mean(dim=(0, 2, 3)).tolist())
        std = tuple(train.std(dim=(0, 2, 3)).tolist())
    else:
        mean, std = spec.mean, spec.std
    num_classes = spec.num_classes or int(tensors["train_pstar"].shape[1])
    return Data(
        name=name,
        num_classes=num_classes,
        train=splits["train"],
        test=splits["test"],
        mean=torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255,
        std=torch.tensor(std, device=device).view(1, 3, 1, 1) * 255,
        crop_padding=spec.crop_padding,
        flip=spec.flip,
        val=splits.get("val"),
    )
