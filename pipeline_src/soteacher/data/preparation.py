"""``prepare``: generate (synthetic) or verify (real data) a data set once, and write its manifest."""

from __future__ import annotations

from pathlib import Path

import torch

from soteacher.data import manifest as manifests
from soteacher.data.common import describe_files
from soteacher.data.registry import DATASETS
from soteacher.data.splits import raw_root, read_real, refuse_streamed_val, split_names, val_count


def prepare(data_cfg: dict, out_dir: Path) -> dict:
    """Generate (synthetic) or verify (real data) a data set and write its manifest.

    Real data is checked as it is read (layout, file sizes, sample and class counts, image sizes, and the
    published md5 sums where there are some); the manifest lists the files read and the sha256 of the
    arrays, which every later ``load`` compares against.
    """
    name = data_cfg["dataset"]
    spec = DATASETS[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"dataset": name}
    if name == "synthetic":
        from soteacher.data.synthetic import generate

        tensors = generate(data_cfg["synthetic"], val_size=val_count(data_cfg))
        tmp = out_dir / (manifests.TENSORS_FILE + ".tmp")
        torch.save(tensors, tmp)
        tmp.replace(out_dir / manifests.TENSORS_FILE)
        available = {split: tensors[f"{split}_labels"].numel() for split in split_names(tensors)}
    else:
        root = raw_root(name, data_cfg)
        manifest.update(root=str(root.resolve()), num_classes=spec.num_classes)
        refuse_streamed_val(name, data_cfg)  # before a download, not after
        if data_cfg.get("download") and spec.download is not None:
            spec.download(root)
        if spec.open_stream is not None:
            return _prepare_stream(name, data_cfg, root, out_dir, manifest)
        tensors, available = read_real(name, data_cfg, root)
    manifest["splits"] = {
        split: {
            "samples": int(tensors[f"{split}_labels"].numel()),
            "available": int(available[split]),
            "image_shape": list(tensors[f"{split}_images"].shape[1:]),
            "classes": int(tensors[f"{split}_labels"].max()) + 1,
            "images_sha256": manifests.digest(tensors[f"{split}_images"]),
            "labels_sha256": manifests.digest(tensors[f"{split}_labels"]),
            # real data: val is read from the training files
            **({"files": describe_files(spec.files(root, "test" if split == "test" else "train"), root)}
               if spec.files else {}),
        }
        for split in split_names(tensors)
    }
    if "val" in manifest["splits"] and name != "synthetic":
        manifest["splits"]["val"].update(drawn_from="train", val_seed=int(data_cfg.get("val_seed") or 0))
    if name == "synthetic":
        from soteacher.data.synthetic import bayes_reference

        # p*(x) is known: the Bayes-optimal classifier's scores per split, to read the nets' accuracies against
        refs = {split: bayes_reference(tensors[f"{split}_pstar"], tensors[f"{split}_labels"])
                for split in split_names(tensors)}
        manifest["reference"] = {key: {split: ref[key] for split, ref in refs.items()}
                                 for key in ("bayes_acc", "expected_max_pstar")}
    manifests.write(out_dir, manifest)
    return manifest


def _prepare_stream(name: str, data_cfg: dict, root: Path, out_dir: Path, manifest: dict) -> dict:
    data = DATASETS[name].open_stream(name, root, data_cfg, torch.device("cpu"))
    manifest["splits"] = {}
    for split in ("train", "test"):
        s = getattr(data, split)
        manifest["splits"][split] = {
            "samples": len(s),
            "image_shape": list(data.image_shape),
            "classes": int(s.labels.max()) + 1,
            "labels_sha256": manifests.digest(s.labels),
            "files": describe_files([Path(p) for p in s.paths], root),
        }
    manifests.write(out_dir, manifest)
    return manifest
