"""KD (Hinton, Vinyals & Dean 2015): match the teacher's temperature-softened class distribution.

The whole loss is the shared logit part of ``DistillMethod`` (γ·CE + α·KL·T²); it adds no term.
"""

from soteacher.distill.base import DistillMethod


class KD(DistillMethod):
    name = "kd"
