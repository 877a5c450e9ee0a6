"""FT, factor transfer (Kim, Park & Kwak, NeurIPS 2018), as in RepDistiller.

A paraphraser (3 conv + LeakyReLU(0.1) encoder to ``rate``·C_t channels, 3 transposed-conv decoder back)
is first trained for ``init_epochs`` epochs to reconstruct the teacher's last stage map (MSE); it is then
frozen. In the main phase a translator (3 conv + BN + LeakyReLU) maps the student's last stage map to
factors; with ``φ(f) = normalize(mean_c f²)`` (flattened, L2 per sample; larger map pooled to the smaller)
``loss = mean |φ(translator(s)) − φ(paraphraser.encoder(t))|`` (p = 1).
Defaults (RepDistiller CIFAR-100): β = 200, rate 0.5, 30 init epochs, γ = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.features import pool_to_common
from soteacher.methods.staged import StagedMethod
from soteacher.models.base import ModelOutput


def _conv_stack(channels: list[int], batch_norm: bool, transpose: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers.append(conv(c_in, c_out, 3, 1, 1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    def __init__(self, channels: int, rate: float):
        super().__init__()
        factor = max(1, int(channels * rate))
        self.encoder = _conv_stack([channels, channels, factor, factor], batch_norm=False)
        self.decoder = _conv_stack([factor, factor, channels, channels], batch_norm=False, transpose=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def factor_loss(factor_s: torch.Tensor, factor_t: torch.Tensor) -> torch.Tensor:
    factor_s, factor_t = pool_to_common(factor_s, factor_t)

    def phi(f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.pow(2).mean(1).flatten(1), dim=1)

    return (phi(factor_s) - phi(factor_t)).abs().mean()


class FT(StagedMethod):
    name = "ft"

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        s, t = student.feats[-2], teacher.feats[-2]
        if s.dim() != 4 or t.dim() != 4:
            raise ValueError("ft needs convolutional last-stage feature maps (feats[-2])")
        factor = max(1, int(t.shape[1] * cfg["rate"]))
        self.paraphraser = Paraphraser(t.shape[1], cfg["rate"])
        self.translator = _conv_stack([s.shape[1], s.shape[1], factor, factor], batch_norm=True)

    def init_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                  indices: torch.Tensor) -> torch.Tensor:
        t = teacher.feats[-2]
        return F.mse_loss(self.paraphraser(t), t)

    def end_init(self) -> None:
        self.paraphraser.requires_grad_(False)

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            factor_t = self.paraphraser.encoder(teacher.feats[-2])
        return factor_loss(self.translator(student.feats[-2]), factor_t)
