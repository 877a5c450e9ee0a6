"""FitNet (Romero et al. 2015): regress a teacher hint layer from a student layer through a regressor.

Loss: mean squared error between ``regressor(student.feats[hint_layer])`` and ``teacher.feats[hint_layer]``.
The regressor is the reference code's (``features.HintRegressor`` with ReLU): a 1×1 conv + BN + ReLU to the
teacher's channel count when the maps have the same size, a strided or transposed conv when they differ by 2×.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.features import HintRegressor
from soteacher.models.base import ModelOutput


def fitnet_loss(student_hint: torch.Tensor, teacher_hint: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student_hint, teacher_hint)


class FitNet(DistillMethod):
    name = "fitnet"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        layer = cfg["hint_layer"]
        maps = min(len(student.feats), len(teacher.feats)) - 1  # the last entry is the pooled vector
        if not 0 <= layer < maps:
            raise ValueError(f"fitnet.hint_layer={layer} is out of range: both networks have feature maps "
                             f"0..{maps - 1} (0 = stem)")
        s, t = student.feats[layer], teacher.feats[layer]
        if s.dim() != 4 or t.dim() != 4:
            raise ValueError(f"fitnet.hint_layer={layer} must name a convolutional feature map")
        self.connector = HintRegressor(tuple(s.shape[1:]), tuple(t.shape[1:]), relu=True)

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        layer = self.cfg["hint_layer"]
        return fitnet_loss(self.connector(student.feats[layer]), teacher.feats[layer])
