"""The config sections every training job receives, typed: ``Compute`` (where and how it runs) and ``Optim`` (a
training phase's optimiser). Every key of the schema's section is a field, so a setting the schema gains and no
code reads fails when a job's spec is built, instead of being silently ignored. Importable without torch (the
rules build specs at Snakemake's start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Compute:
    device: str  # auto | cpu | cuda
    threads: int  # CPU threads per rank
    deterministic: bool
    amp: str  # none | bf16
    channels_last: bool
    compile: bool
    cudnn_benchmark: bool
    resume_every: int  # epochs between saved training states; 0: never
    gpus_per_job: int  # ranks per node
    nodes_per_job: int
    sync_bn: bool
    collective_timeout_s: int

    @property
    def ranks(self) -> int:
        """The job's processes: ranks per node × nodes."""
        return self.gpus_per_job * self.nodes_per_job


@dataclass(frozen=True)
class Optim:
    """A training phase's optimiser settings (the config's ``teacher.optim`` / ``distill.optim``)."""

    lr: float
    lr_by_arch: dict[str, float]  # overrides lr for these architectures
    momentum: float
    weight_decay: float
    batch_size: int  # the global batch (split over a job's ranks)
    lr_schedule: str  # multistep | cosine
    lr_milestones: list[int]  # multistep: epochs after which the lr is multiplied by lr_gamma
    lr_gamma: float

    def lr_of(self, arch: str) -> float:
        """The learning rate of an architecture: ``lr_by_arch`` when it lists it, else ``lr``."""
        return self.lr_by_arch.get(arch, self.lr)
