"""Registry of KD methods: lower-case name -> method class. Adding a method = one file + one line here."""

from __future__ import annotations

from soteacher.distill.base import DistillMethod
from soteacher.distill.fitnet import FitNet
from soteacher.distill.kd import KD

METHODS: dict[str, type[DistillMethod]] = {cls.name: cls for cls in (KD, FitNet)}

__all__ = ["METHODS", "DistillMethod"]
