"""Registry of KD methods: lower-case name -> method class. Adding a method = one file + one line here."""

from __future__ import annotations

from soteacher.distill.ab import AB
from soteacher.distill.at import AT
from soteacher.distill.base import DistillMethod
from soteacher.distill.cc import CC
from soteacher.distill.crd import CRD
from soteacher.distill.dist import DIST
from soteacher.distill.dkd import DKD
from soteacher.distill.fitnet import FitNet
from soteacher.distill.fsp import FSP
from soteacher.distill.ft import FT
from soteacher.distill.kd import KD
from soteacher.distill.nst import NST
from soteacher.distill.pkt import PKT
from soteacher.distill.rkd import RKD
from soteacher.distill.sp import SP
from soteacher.distill.staged import InitStage, StagedMethod
from soteacher.distill.vanilla import Vanilla
from soteacher.distill.vid import VID

METHODS: dict[str, type[DistillMethod]] = {
    cls.name: cls for cls in (Vanilla, KD, FitNet, AT, SP, CC, VID, RKD, PKT, AB, FT, FSP, NST, CRD, DKD, DIST)
}

__all__ = ["METHODS", "DistillMethod", "InitStage", "StagedMethod"]
