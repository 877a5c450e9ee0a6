"""DKD, decoupled KD (Zhao et al., CVPR 2022), as in mdistiller.

With b = (p_gt, 1 − p_gt) the binary target/non-target probabilities and p̂ the distribution over the
non-target classes (softmax at temperature T throughout):
``DKD = a·KL(b_t ‖ b_s)·T² + b·KL(p̂_t ‖ p̂_s)·T²`` (TCKD + NCKD, batch means), scaled by the linear
warm-up ``min(epoch / warmup_epochs, 1)`` (epoch counted from 1, as in mdistiller). The epoch counter is a
buffer advanced by ``end_epoch``, so it is saved with the method. With ``logit_standardization`` (Sun et
al. 2024) both logits are Z-scored first. Defaults (mdistiller CIFAR-100): CE 1, a = 1, b = 8, T = 4,
20 warm-up epochs, β = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.logit_std import standardize
from soteacher.models.base import ModelOutput


def dkd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, labels: torch.Tensor, tckd_weight: float,
             nckd_weight: float, temperature: float) -> torch.Tensor:
    gt = F.one_hot(labels, logits_s.shape[1]).bool()
    p_s = F.softmax(logits_s / temperature, dim=1)
    p_t = F.softmax(logits_t / temperature, dim=1)
    pgt_s, pgt_t = p_s[gt], p_t[gt]
    b_s = torch.stack([pgt_s, 1 - pgt_s], dim=1)
    b_t = torch.stack([pgt_t, 1 - pgt_t], dim=1)
    tckd = F.kl_div(b_s.log(), b_t, reduction="batchmean") * temperature**2
    # non-target distributions: drop the target class by pushing its logit far down
    log_q_s = F.log_softmax(logits_s / temperature - 1000.0 * gt, dim=1)
    q_t = F.softmax(logits_t / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_q_s, q_t, reduction="batchmean") * temperature**2
    return tckd_weight * tckd + nckd_weight * nckd


class DKD(DistillMethod):
    name = "dkd"

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    def warmup_factor(self) -> float:
        return min((int(self.epochs_done) + 1) / self.cfg["warmup_epochs"], 1.0)

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        s, t = student.logits, teacher.logits
        if cfg["logit_standardization"]:
            s, t = standardize(s), standardize(t)
        loss = dkd_loss(s, t, labels, cfg["tckd_weight"], cfg["nckd_weight"], cfg["kd_temperature"])
        return self.warmup_factor() * loss

    def end_epoch(self, finished_epoch: int) -> None:
        self.epochs_done.fill_(finished_epoch)
