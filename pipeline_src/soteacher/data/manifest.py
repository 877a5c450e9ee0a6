"""The manifest ``prepare`` writes next to the prepared data, and the check ``load`` makes against it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from soteacher.data.common import DataError

TENSORS_FILE = "tensors.pt"
MANIFEST_FILE = "manifest.json"


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def write(out_dir: Path, manifest: dict) -> None:
    tmp = out_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out_dir / MANIFEST_FILE)


def check(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """The arrays must be the ones ``prepare`` verified (when it has run): the data must not change under a study."""
    if not path.is_file():
        return
    splits = json.loads(path.read_text()).get("splits", {})
    for split, info in splits.items():
        for kind in ("images", "labels"):
            want, key = info.get(f"{kind}_sha256"), f"{split}_{kind}"
            if want is not None and key in tensors and digest(tensors[key]) != want:
                raise DataError(f"the {split} {kind} read now differ from those recorded in {path} "
                                f"(sha256 {want}): the data or data.*_limit changed; run prepare-data again")
