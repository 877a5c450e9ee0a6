"""Lipschitz penalty (SoTeacher: Dong, Liu & Shang, "Toward Student-Oriented Teacher Network Training for
Knowledge Distillation"): λ_LR times a sum of per-layer upper bounds on the network's Lipschitz
constant.

Reference form (SoTeacher's public code), summed over every leaf module, classifier included:

* Conv2d: entry-wise L1 norm of the kernel, ``Σ|w|``;
* BatchNorm: ``max_c |γ_c| / sqrt(running_var_c + eps)``;
* Linear: matrix ℓ1 operator norm, ``max_c Σ_r |W_rc|`` (largest column abs-sum).

The optional ``spectral`` bound replaces the Conv2d/Linear terms by the largest singular value of the
(reshaped) weight, estimated with persistent power iteration.

The modules are collected once at construction so each training step runs a handful of fused tensor
ops instead of walking the module tree in Python (that walk launches hundreds of kernels per step on
a GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput
from soteacher.teachers.terms.base import TeacherSetup, TeacherTerm

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class LipschitzPenalty(nn.Module):
    """The unweighted bound of ``net``, read from its current weights at each call."""

    def __init__(self, net: nn.Module, bound: str = "l1", power_iterations: int = 1):
        super().__init__()
        if bound not in ("l1", "spectral"):
            raise ValueError(f"unknown Lipschitz bound {bound!r}; allowed: l1, spectral")
        self.bound = bound
        self.power_iterations = power_iterations
        self._convs: list[torch.Tensor] = []
        self._linears: list[torch.Tensor] = []
        self._bns: list[nn.modules.batchnorm._BatchNorm] = []
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                self._convs.append(module.weight)
            elif isinstance(module, nn.Linear):
                self._linears.append(module.weight)
            elif isinstance(module, _BATCHNORMS):
                self._bns.append(module)
        if self._bns:
            # segment ids map each channel to its BatchNorm layer, for one vectorised per-layer max
            sizes = [bn.num_features for bn in self._bns]
            segment = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
            eps = torch.repeat_interleave(torch.tensor([bn.eps for bn in self._bns]), torch.tensor(sizes))
            device = self._bns[0].running_var.device
            self.register_buffer("_bn_segment", segment.to(device), persistent=False)
            self.register_buffer("_bn_eps", eps.to(device), persistent=False)
        if bound == "spectral":
            generator = torch.Generator().manual_seed(0)
            for i, w in enumerate(self._convs + self._linears):
                u = F.normalize(torch.randn(w.shape[0], generator=generator), dim=0)
                # persistent: the iteration's state is part of the resumable training state
                self.register_buffer(f"_u{i}", u.to(w.device))

    def _bn_term(self) -> torch.Tensor:
        gammas = torch.cat([bn.weight if bn.affine else torch.ones_like(bn.running_var) for bn in self._bns])
        running_var = torch.cat([bn.running_var for bn in self._bns])
        ratio = gammas.abs() / torch.sqrt(running_var + self._bn_eps)
        per_layer = torch.full((len(self._bns),), float("-inf"), device=ratio.device, dtype=ratio.dtype)
        per_layer = per_layer.scatter_reduce(0, self._bn_segment, ratio, reduce="amax")
        return per_layer.sum()

    def _spectral_norm(self, i: int, weight: torch.Tensor) -> torch.Tensor:
        """Largest singular value of the weight reshaped to (out, in·k·k), by power iteration."""
        matrix = weight.reshape(weight.shape[0], -1)
        u = getattr(self, f"_u{i}")
        with torch.no_grad():
            for _ in range(max(1, self.power_iterations)):
                v = F.normalize(matrix.t() @ u, dim=0)
                u = F.normalize(matrix @ v, dim=0)
            getattr(self, f"_u{i}").copy_(u)
        return torch.dot(u, matrix @ v)

    def forward(self) -> torch.Tensor:
        terms: list[torch.Tensor] = []
        if self.bound == "l1":
            if self._convs:
                terms.append(torch.stack(torch._foreach_norm(self._convs, 1)).sum())
            terms += [w.abs().sum(dim=0).max() for w in self._linears]
        else:
            terms += [self._spectral_norm(i, w) for i, w in enumerate(self._convs + self._linears)]
        if self._bns:
            terms.append(self._bn_term())
        if not terms:
            raise ValueError("the network has no Conv2d, Linear or BatchNorm layer to regularise")
        return torch.stack(terms).sum()


class Lipschitz(TeacherTerm):
    name = "lipschitz"
    weight_param = "weight"

    def __init__(self, params: dict, setup: TeacherSetup):
        super().__init__(params, setup)
        self.penalty = LipschitzPenalty(setup.net, params["bound"])

    def forward(self, out: ModelOutput, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return self.params["weight"] * self.penalty()
