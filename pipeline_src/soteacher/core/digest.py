"""The one hash of the project: folder names (``study.identity``), MLflow dataset digests, job names."""

from __future__ import annotations

import hashlib
import json

HASH_LENGTH = 8


def _canonical(obj):
    """Numbers as floats (``lr: 1`` and ``lr: 1.0`` are one setting), dicts by sorted key (``json.dumps``)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, float)):
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return str(obj)


def stable_hash(obj, length: int = HASH_LENGTH) -> str:
    """The first ``length`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(_canonical(obj), sort_keys=True).encode()).hexdigest()[:length]
