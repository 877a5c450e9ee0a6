"""Import a published teacher checkpoint (``teacher.imports``) as if this pipeline had trained it.

The reference codebases (RepDistiller, mdistiller) publish teachers as ``<arch>_vanilla/ckpt_epoch_240.pth``:
a dict with the weights under ``"model"`` and maybe ``"epoch"``, ``"optimizer"``, ``"best_acc"``/``"accuracy"``.
The file is read with ``torch.load(..., weights_only=True)`` (nothing in it is executed), its weights are
loaded strictly into our architecture of the same name (the zoo keeps RepDistiller's state-dict names), the
test accuracy is evaluated once, and the job writes what ``train-teacher`` writes: ``ep<epoch>.pt`` in our
format and ``metrics.json`` under ``results/teachers/``, plus one MLflow teacher run. Distillation and
aggregation then treat it like any trained teacher.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from soteacher.core import devices, layout
from soteacher.core.errors import CheckpointError
from soteacher.core.io import load_error, save_torch
from soteacher.teachers.spec import ImportSpec

log = logging.getLogger(__name__)

ACCURACY_KEYS = ("best_acc", "accuracy", "acc", "test_acc")
CONVERT_HINT = ("If you trust the file, convert it once to plain tensors and numbers (this one step unpickles it "
                "with weights_only=False): python -m soteacher convert-checkpoint {path} OUT.pth --trust-source")


# --- reading ------------------------------------------------------------------------------------------------


class _Stub(dict):
    """Stands in for any class or function a pickle names; records the name and never runs anything."""

    qualname = ""

    def __new__(cls, *args, **kwargs):
        return dict.__new__(cls)

    def __init__(self, *args, **kwargs):
        dict.__init__(self)

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _InspectingUnpickler(pickle.Unpickler):
    """Rebuilds only the structure of a torch pickle (dicts, lists, names of globals), for error messages."""

    def find_class(self, module, name):
        return type(name, (_Stub,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid):
        return None


def _pickle_streams(path: Path) -> list[bytes]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return [zf.read(n) for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"][:1]
    return [path.read_bytes()]  # legacy format: magic number, protocol, sys info, then the object


def _globals_by_key(path: Path) -> dict[str, set[str]]:
    """For a checkpoint dict, the names of the classes/functions each top-level key's value refers to."""
    try:
        [data] = _pickle_streams(path)
        unpickler = _InspectingUnpickler(io.BytesIO(data))
        obj = unpickler.load()
        if not zipfile.is_zipfile(path):
            for _ in range(3):  # skip protocol version and sys info to reach the object
                obj = unpickler.load()
    except Exception:  # the diagnosis is best effort; the caller still reports torch's own message
        return {}

    def names(value, depth=0) -> set[str]:
        found = {value.qualname} if isinstance(value, _Stub) and value.qualname else set()
        if depth > 50:
            return found
        if isinstance(value, dict):
            for v in value.values():
                found |= names(v, depth + 1)
        elif isinstance(value, (list, tuple)):
            for v in value:
                found |= names(v, depth + 1)
        return found

    if not isinstance(obj, dict):
        return {}
    return {str(k): names(v) for k, v in obj.items()}


def read_reference(path: Path) -> dict:
    """A checkpoint file in the reference format, loaded with ``weights_only=True``.

    When torch refuses a global (numpy scalars, pickled optimizer objects, argparse Namespaces), the error
    names the top-level key that holds it and how to convert the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint to import not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        refused = match[1] if match else None
        by_key = _globals_by_key(path)
        offenders = [k for k, names in by_key.items() if refused in names] if refused else []
        # other keys that will fail next: anything that is not torch's own or a plain container
        others = sorted({k for k, names in by_key.items()
                         if any(not n.startswith(("torch.", "collections.OrderedDict", "builtins.")) for n in names)}
                        - set(offenders))
        what = f"the global {refused}" if refused else "an object torch does not allow"
        where = f" stored under key {', '.join(map(repr, offenders))}" if offenders else ""
        also = f" (keys {', '.join(map(repr, others))} hold other non-tensor objects too)" if others else ""
        raise CheckpointError(
            f"cannot load {path} with torch.load(weights_only=True): it contains {what}{where}{also}. "
            + CONVERT_HINT.format(path=path)) from None
    except Exception as err:
        raise load_error(path, err) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (the reference format has the weights under 'model'), "
                              f"got {type(obj).__name__}")
    return obj


def state_dict_of(obj: dict, path: Path) -> dict[str, torch.Tensor]:
    """The weights: ``obj['model']`` (reference format), or ``obj`` itself when it is a bare state dict.

    A ``module.`` prefix on every key (a model saved inside DataParallel) is removed.
    """
    if "model" in obj:
        state = obj["model"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise CheckpointError(f"{path}: no 'model' entry (keys: {', '.join(map(str, obj))}); the reference format "
                              "is {'model': state_dict, 'epoch': ..., ...}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model' is not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], arch: str, path: Path) -> None:
    """``load_state_dict(strict=True)``, failing with every missing, unexpected and mis-shaped key named."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        def listed(label, keys):
            more = f", … {len(keys) - 8} more" if len(keys) > 8 else ""
            return f"\n  {len(keys)} {label}: {', '.join(keys[:8])}{more}" if keys else ""

        raise CheckpointError(
            f"{path} does not fit architecture {arch!r} (strict loading):"
            + listed("missing keys", missing) + listed("unexpected keys", unexpected)
            + listed("shape mismatches", shapes)
            + "\n  check teacher.imports.*.arch (and that the data set has as many classes as the checkpoint)")
    model.load_state_dict(state, strict=True)


def _scalar(value) -> float | int | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def reference_info(obj: dict) -> dict:
    """What the file says about itself: its epoch and stored accuracy, when present."""
    info = {"keys": sorted(map(str, obj))}
    if "epoch" in obj:
        info["epoch"] = _scalar(obj["epoch"])
    for key in ACCURACY_KEYS:
        if key in obj and _scalar(obj[key]) is not None:
            info["stored_accuracy"] = {"key": key, "value": _scalar(obj[key])}
            break
    return info


def convert(src: Path, dst: Path) -> dict:
    """Rewrite a trusted checkpoint with pickled objects as plain tensors and numbers (``model``, ``epoch``,
    accuracy), which ``weights_only=True`` then reads. Unpickles ``src`` fully: only for files you trust."""
    obj = torch.load(src, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{src}: expected a dict, got {type(obj).__name__}")
    out: dict = {"model": {k: v.detach().clone() for k, v in state_dict_of(obj, src).items()}}
    for key in ("epoch", *ACCURACY_KEYS):
        if key in obj:
            try:
                value = float(obj[key])
            except (TypeError, ValueError):
                continue
            out[key] = int(value) if key == "epoch" else value
    save_torch(dst, out)
    read_reference(dst)  # proves it now loads with weights_only=True
    return out


# --- the job ------------------------------------------------------------------------------------------------


def run_import(spec: ImportSpec, tracking_uri: str, experiment: str) -> Path:
    import shutil

    from soteacher.core.tracking import ending, file_md5
    from soteacher.data import load as load_data
    from soteacher.models import build_model
    from soteacher.teachers.outputs import publish, save_checkpoint, teacher_run
    from soteacher.training.evaluation import evaluate

    arch, name, epoch = spec.arch, spec.recipe, spec.epoch
    source = Path(spec.source)
    obj = read_reference(source)
    info = {"path": str(source), "md5": file_md5(source), **reference_info(obj)}
    if info.get("epoch") is not None and int(info["epoch"]) != epoch:
        raise CheckpointError(f"{source} says epoch {info['epoch']}, but teacher.imports.{name}.epoch is {epoch}; "
                              "set the config's epoch to the file's")
    device = devices.setup(spec.compute)
    data = load_data(spec.data, Path(spec.data_dir), device)
    model = build_model(arch, data.num_classes)
    load_strict(model, state_dict_of(obj, source), arch, source)
    model.to(device).eval()
    metrics = {"epoch": epoch, **evaluate(model, data)}
    log.info("imported %s as %s (%s): test accuracy %.2f%%", source, name, arch, metrics["test_acc"])

    run = teacher_run(spec, tracking_uri, experiment, device, **{"imported": "true", "source.path": str(source),
                                                      "source.md5": info["md5"]})
    staged_dir = Path(spec.dir) / layout.RESUME_DIR
    staged = staged_dir / layout.CHECKPOINT_FILE.format(epoch=epoch)
    with ending([run]):
        run.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        run.log_metrics({f"final_{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        save_checkpoint(staged, model, spec, data.num_classes, epoch, imported_from=info)
        out_dir = publish(spec, run, [metrics], {epoch: staged}, imported_from=info)
    shutil.rmtree(staged_dir, ignore_errors=True)
    return out_dir
