"""CRD, contrastive representation distillation (Tian, Krishnan & Isola, ICLR 2020), as in RepDistiller.

Pooled embeddings go through linear heads to ``feat_dim`` and are L2-normalised (v_s, v_t). Two memory
banks of ``num_samples`` entries hold a momentum average of each sample's student and teacher embedding.
For a batch, each anchor i draws ``nce_k`` negative indices (uniformly with replacement, from the method's
own ``torch.Generator``) next to its positive index (its dataset index, from the batch). Scores
``h = exp(v · m / nce_t) / Z`` (Z fixed on the first batch as mean(exp(·)) · N) are scored against the
*other* network's bank; with Pn = 1/N and m = nce_k the NCE loss per network is
``−(Σ_i log(h_i⁺ / (h_i⁺ + m Pn + ε)) + Σ_{i,k} log(m Pn / (h_ik⁻ + m Pn + ε))) / B`` and the method loss is
the sum of the student-anchor and teacher-anchor terms. After scoring, the banks' positive entries become
``normalize(momentum · m + (1 − momentum) · v)``.
Defaults (RepDistiller CIFAR-100): β = 0.8, γ = 1, α = 0, feat_dim 128, nce_k 16384, nce_t 0.07,
momentum 0.5. RepDistiller draws negatives from other classes only ("exact" sampling in its data loader);
here they are uniform over the training set, as in its memory's own sampler.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.features import LinearEmbed
from soteacher.models.base import ModelOutput

EPS = 1e-7


def nce_loss(scores: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``scores``: B×(1+K) normalised exp-scores, the positive in column 0."""
    m = scores.shape[1] - 1
    noise = m / num_samples
    log_pos = torch.log(scores[:, 0] / (scores[:, 0] + noise + EPS))
    log_neg = torch.log(noise / (scores[:, 1:] + noise + EPS))
    return -(log_pos.sum() + log_neg.sum()) / scores.shape[0]


class CRD(DistillMethod):
    name = "crd"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        dim = cfg["feat_dim"]
        self.num_samples = num_samples
        self.embed_s = LinearEmbed(student.feats[-1].flatten(1).shape[1], dim, normalize=True)
        self.embed_t = LinearEmbed(teacher.feats[-1].flatten(1).shape[1], dim, normalize=True)
        # the negatives' generator is seeded from the (job-seeded) global generator once, here
        self.negative_seed = int(torch.randint(0, 2**62, (1,)).item())
        init = torch.Generator().manual_seed(self.negative_seed)
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_s", (torch.rand(num_samples, dim, generator=init) * 2 - 1) * stdv)
        self.register_buffer("memory_t", (torch.rand(num_samples, dim, generator=init) * 2 - 1) * stdv)
        self.register_buffer("z_s", torch.tensor(-1.0))
        self.register_buffer("z_t", torch.tensor(-1.0))
        # batches drawn so far: each draw re-seeds from (seed, count), so a resumed job draws the same negatives
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self._generator: torch.Generator | None = None

    def draw_negatives(self, batch: int, device: torch.device) -> torch.Tensor:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        self._generator.manual_seed((self.negative_seed + 1 + int(self.draws)) % 2**63)
        self.draws += 1
        return torch.randint(0, self.num_samples, (batch, self.cfg["nce_k"]), generator=self._generator,
                             device=device)

    def _scores(self, anchor: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor,
                z: torch.Tensor) -> torch.Tensor:
        bank = memory[idx].detach()  # B×(1+K)×D
        out = torch.exp(torch.bmm(bank, anchor.unsqueeze(2)).squeeze(2) / self.cfg["nce_t"])
        if z < 0:
            z.fill_(self.world.mean(out.detach()).item() * self.num_samples)  # over the global batch
        return out / z

    @torch.no_grad()
    def _update(self, memory: torch.Tensor, v: torch.Tensor, indices: torch.Tensor) -> None:
        mom = self.cfg["nce_momentum"]
        memory.index_copy_(0, indices, nn.functional.normalize(memory[indices] * mom + v * (1 - mom), dim=1))

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        v_s = self.embed_s(student.feats[-1])
        v_t = self.embed_t(teacher.feats[-1])
        indices = indices.to(v_s.device)
        # drawn for the global batch, each rank taking its anchors' rows: one process's negatives
        batch = self.world.batch_of(len(indices))
        negatives = self.draw_negatives(batch, v_s.device)[self.world.shard(batch)]
        idx = torch.cat([indices.view(-1, 1), negatives], dim=1)
        out_s = self._scores(v_s, self.memory_t, idx, self.z_s)  # student anchors vs teacher bank
        out_t = self._scores(v_t, self.memory_s, idx, self.z_t)  # teacher anchors vs student bank
        loss = nce_loss(out_s, self.num_samples) + nce_loss(out_t, self.num_samples)
        if self.training:
            every = self.world.gather(indices)  # every rank's bank gets the whole batch's entries
            self._update(self.memory_s, self.world.gather(v_s.detach()), every)
            self._update(self.memory_t, self.world.gather(v_t.detach()), every)
        return loss
