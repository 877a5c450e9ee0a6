"""Job specs as typed objects and back: what a rule hands a job as JSON (``to_json``) becomes the job's dataclass
(``from_json``), nested dataclasses, optional and list fields included. A field the JSON lacks, or a key the class
does not know, is an error that names it (a spec written by another version of the package)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def as_dict(spec: Any) -> dict:
    return dataclasses.asdict(spec)


def to_json(spec: Any) -> str:
    return json.dumps(as_dict(spec), sort_keys=True)


def from_dict(cls: type[T], data: dict) -> T:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    missing = [n for n in names if n not in data]
    if unknown or missing:
        raise TypeError(f"{cls.__name__}: " + "; ".join(
            part for part in (f"unknown key(s) {', '.join(unknown)}" if unknown else "",
                              f"missing key(s) {', '.join(missing)}" if missing else "") if part))
    return cls(**{n: _value(hints[n], data[n]) for n in names})


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(inner, value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_value(item, v) for v in value]
    return value


def from_json(cls: type[T], text: str) -> T:
    return from_dict(cls, json.loads(text))
