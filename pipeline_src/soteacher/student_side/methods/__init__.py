"""Registry of KD methods: lower-case name -> method class. Adding a method = one file + one line here."""

from __future__ import annotations

from soteacher.student_side.methods.ab import AB
from soteacher.student_side.methods.at import AT
from soteacher.student_side.methods.base import DistillMethod
from soteacher.student_side.methods.cc import CC
from soteacher.student_side.methods.crd import CRD
from soteacher.student_side.methods.dist import DIST
from soteacher.student_side.methods.dkd import DKD
from soteacher.student_side.methods.fitnet import FitNet
from soteacher.student_side.methods.fsp import FSP
from soteacher.student_side.methods.ft import FT
from soteacher.student_side.methods.kd import KD
from soteacher.student_side.methods.nst import NST
from soteacher.student_side.methods.pkt import PKT
from soteacher.student_side.methods.rkd import RKD
from soteacher.student_side.methods.sp import SP
from soteacher.student_side.methods.staged import InitStage, StagedMethod
from soteacher.student_side.methods.vanilla import Vanilla
from soteacher.student_side.methods.vid import VID

METHODS: dict[str, type[DistillMethod]] = {
    cls.name: cls for cls in (Vanilla, KD, FitNet, AT, SP, CC, VID, RKD, PKT, AB, FT, FSP, NST, CRD, DKD, DIST)
}

__all__ = ["METHODS", "DistillMethod", "InitStage", "StagedMethod"]
