"""PKT, probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), as in RepDistiller / mdistiller.

On the pooled embeddings, cosine similarities are mapped to [0, 1] and row-normalised into conditional
distributions ``p_{j|i} = (1 + cos(e_i, e_j)) / Σ_k (1 + cos(e_i, e_k))``;
``loss = mean_{i,j} p^t_{j|i} · log((p^t_{j|i} + ε) / (p^s_{j|i} + ε))`` with ε = 1e-7.
Defaults (mdistiller / RepDistiller): β = 30000, γ = 1, α = 0.
"""

from __future__ import annotations

import torch

from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput


def _conditional(e: torch.Tensor, eps: float) -> torch.Tensor:
    e = e.flatten(1)
    e = torch.nan_to_num(e / (e.norm(dim=1, keepdim=True) + eps))
    sim = (e @ e.t() + 1.0) / 2.0
    return sim / sim.sum(1, keepdim=True)


def pkt_loss(e_s: torch.Tensor, e_t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    p_s, p_t = _conditional(e_s, eps), _conditional(e_t, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


class PKT(DistillMethod):
    name = "pkt"
    needs_features = True

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        # over the global batch
        return pkt_loss(self.world.gather(student.feats[-1]), self.world.gather(teacher.feats[-1]))
