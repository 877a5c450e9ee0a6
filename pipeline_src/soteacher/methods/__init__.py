"""Registry of KD methods: lower-case name -> method class. Adding a method = one file + one line here."""

from __future__ import annotations

from soteacher.methods.ab import AB
from soteacher.methods.at import AT
from soteacher.methods.base import DistillMethod
from soteacher.methods.cc import CC
from soteacher.methods.crd import CRD
from soteacher.methods.dist import DIST
from soteacher.methods.dkd import DKD
from soteacher.methods.filter_kd import FilterKD
from soteacher.methods.fitnet import FitNet
from soteacher.methods.fsp import FSP
from soteacher.methods.ft import FT
from soteacher.methods.kd import KD
from soteacher.methods.nst import NST
from soteacher.methods.oracle import Oracle
from soteacher.methods.pkt import PKT
from soteacher.methods.rkd import RKD
from soteacher.methods.sp import SP
from soteacher.methods.staged import InitStage, StagedMethod
from soteacher.methods.vanilla import Vanilla
from soteacher.methods.vid import VID

METHODS: dict[str, type[DistillMethod]] = {
    cls.name: cls for cls in (Vanilla, KD, FitNet, AT, SP, CC, VID, RKD, PKT, AB, FT, FSP, NST, CRD, DKD, DIST, Oracle,
                                FilterKD)
}

__all__ = ["METHODS", "DistillMethod", "InitStage", "StagedMethod"]
