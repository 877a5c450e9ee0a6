"""Atomic file writes: an output either appears complete or not at all (write, fsync, rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from soteacher.core.errors import CheckpointError


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it: set and straight back, once, at import (before any thread writes)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write) -> None:
    """Call ``write(binary file)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            # mkstemp creates the file 0600; results are shared (a cluster group, a DVC remote): the umask decides
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_torch(path: Path, obj: Any) -> None:
    import torch  # here, not at the top: the JSON helpers serve jobs that never load torch (aggregate)

    atomic_write(path, lambda f: torch.save(obj, f))


def load_error(path: Path, err: Exception) -> CheckpointError:
    """Why ``torch.load`` failed on ``path``, in one line."""
    first_line = (str(err).splitlines() or [""])[0]
    return CheckpointError(f"cannot load checkpoint {path}: {type(err).__name__}: {first_line}")


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary pickles); errors name the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, foreign or malicious files all end here
        raise load_error(path, err) from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path} is not a soteacher checkpoint (expected a dict with a 'model' state dict)")
    return obj
