"""The p*-oracle student (the positive control): distil from the true label distribution p*(x) itself.

Its target for training sample i is p*(x_i), known for synthetic data only (``Split.pstar``); config validation
refuses it for a data set without p*. Loss: ``α·KL(p*(x_i) ‖ softmax(s/T))·T² + γ·CE`` (defaults α 1, γ 0, T 1:
the student matches p* itself; p* has no logits, so a temperature softens the student alone). It needs no teacher:
like the vanilla student it is trained once per student × seed (rule train_vanilla) and stands under every teacher
checkpoint in the tables. The target is p* of the un-augmented image i, applied to the batch's augmented view of i.
"""

from __future__ import annotations

from soteacher.data import Data
from soteacher.methods.soft_targets import SoftTargetMethod


class Oracle(SoftTargetMethod):
    name = "oracle"
    needs_teacher = False

    def attach(self, data: Data, teacher_checkpoint: dict | None) -> None:
        if data.train.pstar is None:
            raise ValueError(f"oracle: data set {data.name!r} has no p*(x) for its training samples")
        self.set_targets(data.train.pstar)
