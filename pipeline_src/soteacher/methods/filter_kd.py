"""Filter-KD (Ren, Guo & Sutherland, ICLR 2022): distil from the teacher's own moving average of its training
predictions instead of its final output.

While the teacher trains (``teacher.filter_table``), every visit of training sample i moves its row of a table
towards the teacher's prediction, q_i ← (1 − α)·q_i + α·softmax(z_i/τ) (``training.averages.ExponentialAverage``,
α 0.05, τ 1), and each saved checkpoint holds the table as it stood (key ``filter_table``). The student's target
for sample i is that checkpoint's row q_i: loss ``α_kd·KL(q_i ‖ softmax(s/T))·T²`` with α_kd 2 and no CE term, as
in their code. The teacher network's output is not read, so it shares a distill job with the checkpoint's other
methods. The row belongs to the un-augmented image i and is applied to the batch's augmented view of i.
"""

from __future__ import annotations

from soteacher.data import Data
from soteacher.methods.soft_targets import SoftTargetMethod
from soteacher.training.averages import FILTER_TABLE


class FilterKD(SoftTargetMethod):
    name = "filter_kd"

    def attach(self, data: Data, teacher_checkpoint: dict | None) -> None:
        if teacher_checkpoint is None or FILTER_TABLE not in teacher_checkpoint:
            raise ValueError("filter_kd: the teacher checkpoint holds no filter_table (its teacher was trained "
                             "without teacher.filter_table)")
        self.set_targets(teacher_checkpoint[FILTER_TABLE])
