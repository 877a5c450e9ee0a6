"""The one training loop, for teachers and students alike.

Several *learners* (a model, its objective, optimiser and lr schedule) train in lockstep on the same
shuffled, augmented batches. When a frozen teacher is given, its forward pass runs once per batch and
its outputs go to every learner, so M students of one teacher checkpoint cost one teacher forward.
A learner's result does not depend on which other learners share the loop: each owns its parameters and
optimiser, and all randomness of a batch comes from the shared data generator (seeded by the job seed).

Per-step losses stay on the device; they are read once per epoch, so a GPU never waits on the host.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from soteacher.core.errors import CheckpointError, NonFiniteLossError, TrainingInterrupted
from soteacher.core.io import save_torch
from soteacher.core.ranks import SINGLE, World
from soteacher.core.settings import Compute, Optim
from soteacher.data import Data
from soteacher.models.base import ModelOutput
from soteacher.training.metrics import accuracy, kl_from, tv_to
from soteacher.training.optim import SGD, MultiStepLR

log = logging.getLogger(__name__)


class Objective(Protocol):
    """What the loop asks of a learner's loss (a teacher's objective, a KD method, a staged method's init stage):
    an ``nn.Module`` called on the learner's output, the teacher's (None without a teacher), the labels and the
    sample indices, returning named loss terms that the loop sums."""

    needs_features: bool  # the loop then runs the learner (and the teacher) with ``with_features=True``

    def __call__(self, out: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                 indices: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def end_epoch(self, finished_epoch: int) -> None:
        """Per-epoch state (ramped weights, temporal ensembles, memory banks) after each epoch."""

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> nn.Module: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


@dataclass
class Learner:
    name: str
    model: nn.Module
    objective: Objective
    optimizer: SGD
    scheduler: MultiStepLR
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, optim: Optim, lr: float) -> tuple[SGD, MultiStepLR]:
    optimizer = SGD(params, lr=lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    return optimizer, MultiStepLR(optimizer, optim.lr_milestones, optim.lr_gamma)


def _as_output(result: torch.Tensor | ModelOutput) -> ModelOutput:
    return result if isinstance(result, ModelOutput) else ModelOutput(result, [], [])


@torch.no_grad()
def predict(model: nn.Module, data: Data, split: str, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) on a data split, without augmentation."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x) for x, _ in data.eval_batches(getattr(data, split), batch_size)])
    model.train(was_training)
    return logits


def evaluate(model: nn.Module, data: Data, train_split: bool = True) -> dict[str, float]:
    """Accuracy (%) and loss on the test and validation splits; where p*(x) is known, the mean TV and
    KL(p* ‖ softmax) to it per split. ``train_split``: also evaluate the training split (without augmentation,
    as for test: ``train_eval_acc``, and its distance to p*), one more forward pass over it when p* is known."""
    metrics: dict[str, float] = {}
    splits = [("test", data.test), ("val", data.val)]
    if train_split and data.train.pstar is not None:
        splits.append(("train", data.train))
    for name, split in splits:
        if split is None:
            continue
        logits = predict(model, data, name)
        if name == "train":
            metrics["train_eval_acc"] = accuracy(logits, split.labels)
        else:
            metrics[f"{name}_acc"] = accuracy(logits, split.labels)
            metrics[f"{name}_loss"] = nn.functional.cross_entropy(logits, split.labels).item()
        if split.pstar is not None:
            metrics[f"tv_pstar_{name}"] = tv_to(logits, split.pstar)
            metrics[f"kl_pstar_{name}"] = kl_from(split.pstar, logits)
    return metrics


@dataclass(frozen=True)
class Speed:
    """Speed switches from the config's ``compute`` section; off by default (exact fp32 numbers)."""

    amp_bf16: bool = False  # bf16 autocast for forward passes and losses (GPU; CPU autocast works too)
    channels_last: bool = False  # NHWC inputs and weights (tensor cores like them)

    @classmethod
    def from_compute(cls, compute: Compute) -> Speed:
        return cls(amp_bf16=compute.amp == "bf16", channels_last=compute.channels_last)

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.amp_bf16 else contextlib.nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def prepare_model(model: nn.Module, compute: Compute) -> nn.Module:
    """Apply ``compute.channels_last`` and ``compute.compile`` to a model (its state_dict keys are unchanged)."""
    if compute.channels_last:
        model.to(memory_format=torch.channels_last)
    if compute.compile:
        import torch._inductor.config as inductor_config

        # what torch.use_deterministic_algorithms would have set (devices.use_deterministic_algorithms skips it)
        inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
        model.forward = torch.compile(model.forward)
    return model


@dataclass
class Resume:
    """Where and how often the full training state is saved, so a killed job continues where it stopped.

    ``extra`` is job-level state saved alongside (e.g. MLflow run ids); after ``train`` returns or
    raises it holds what the state file held, when one was loaded.
    """

    path: Path
    every: int = 1
    extra: dict = field(default_factory=dict)

    @classmethod
    def of_job(cls, path: Path, compute: Compute) -> Resume | None:
        """Saving every ``compute.resume_every`` epochs into ``path``; None when it is 0 (no resume)."""
        return cls(path, compute.resume_every) if compute.resume_every > 0 else None


def job_options(optim: Optim, augment: bool, compute: Compute) -> dict:
    """The ``train`` arguments every training of a job shares: batch size, augmentation and the speed switches (so
    a job's init stage and its main phase run alike)."""
    return {"batch_size": optim.batch_size, "augment": augment, "speed": Speed.from_compute(compute),
            "sync_bn": compute.sync_bn}


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked after each step (handlers restored on exit)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        log.warning("received signal %d: saving the training state after this step", signum)
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_state(resume: Resume, learners: list[Learner], epoch: int, batches_done: int,
                generator_states: list[torch.Tensor], sums, correct, seen: int, world: World) -> None:
    """Rank 0 writes the state (every rank holds the same weights and buffers); what differs between ranks (RNG
    states, the partial epoch sums of their shards) is kept per rank, under "ranks"."""
    ranks = world.gather_objects({
        "sums": [{k: v.cpu() for k, v in s.items()} for s in sums], "correct": [c.cpu() for c in correct],
        "rng": _rng_state()})
    if world.is_main:
        save_torch(resume.path, {
            "epoch": epoch, "batches_done": batches_done, "generators": [s.cpu() for s in generator_states],
            "seen": seen, "ranks": ranks, "extra": resume.extra,
            "learners": [{
                "name": lr.name, "model": lr.model.state_dict(), "objective": lr.objective.state_dict(),
                "optimizer": lr.optimizer.state_dict(), "scheduler": lr.scheduler.state_dict(), "history": lr.history,
            } for lr in learners],
        })
    world.barrier()  # no rank goes on (or exits) before the state is on disk


def _load_state(resume: Resume, learners: list[Learner], device: torch.device, world: World) -> dict:
    try:
        state = torch.load(resume.path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot load training state {resume.path}: {type(err).__name__}: {err}; "
                              "delete it to start this job from scratch") from None
    names = [s["name"] for s in state["learners"]]
    if names != [lr.name for lr in learners]:
        raise CheckpointError(f"training state {resume.path} belongs to learners {names}, not "
                              f"{[lr.name for lr in learners]}; delete it to start from scratch")
    # states saved before multi-rank jobs hold one process's sums and RNG states at the top level
    per_rank = state.get("ranks") or [{k: state[k] for k in ("sums", "correct", "rng")}]
    if len(per_rank) != world.size:
        # the shards, and so every rank's partial sums and random draws, depend on the number of ranks
        raise CheckpointError(f"training state {resume.path} was saved by a job of {len(per_rank)} rank(s); this "
                              f"one runs {world.size}: run it with compute.gpus_per_job x nodes_per_job = "
                              f"{len(per_rank)} again to resume, or delete the state to start from scratch")
    for lr, saved in zip(learners, state["learners"]):
        lr.model.load_state_dict(saved["model"])
        lr.objective.load_state_dict(saved["objective"])
        lr.optimizer.load_state_dict(saved["optimizer"])
        lr.scheduler.load_state_dict(saved["scheduler"])
        lr.history[:] = saved["history"]
    mine = per_rank[world.rank]
    _set_rng_state(mine["rng"])
    resume.extra.clear()
    resume.extra.update(state["extra"])
    return {**state, "sums": mine["sums"], "correct": mine["correct"]}


class _Joint(nn.Module):
    """A learner's model and objective as one module, so DistributedDataParallel averages the gradients of both
    (KD methods have parameters of their own: connectors, projection heads)."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, teacher_out: ModelOutput | None, y: torch.Tensor, idx: torch.Tensor,
                with_features: bool) -> tuple[ModelOutput, dict[str, torch.Tensor]]:
        out = _as_output(self.model(x, with_features=with_features))
        return out, self.objective(out, teacher_out, y, idx)


def _parallel(learners: list[Learner], world: World, device: torch.device, sync_bn: bool) -> list[nn.Module]:
    """What each learner's step calls: its model and objective, in DDP when there are several ranks."""
    if not world.distributed:
        return [_Joint(lr.model, lr.objective) for lr in learners]
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn and device.type != "cuda" and world.is_main:
        log.warning("compute.sync_bn has no effect on %s (PyTorch's SyncBatchNorm runs on CUDA): each rank normalises "
                    "its shard with the shard's statistics", device.type)
    out = []
    for lr in learners:
        if sync_bn and device.type == "cuda":
            # the new modules keep the old parameters and buffers, so the optimiser's references hold
            lr.model = nn.SyncBatchNorm.convert_sync_batchnorm(lr.model)
        # buffers are not synchronised each step: the objectives keep theirs identical with gathers, BatchNorm's are
        # averaged each epoch (_average_batchnorm); sending them every step would send the whole consistency buffer.
        # static_graph: the same parameters take part in every step, though not all of them (a method's unused
        # connector), which DDP then learns once instead of searching the graph every step
        out.append(DistributedDataParallel(
            _Joint(lr.model, lr.objective), device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False, static_graph=True))
    return out


def _average_batchnorm(model: nn.Module, world: World) -> None:
    """Average the ranks' BatchNorm running statistics (each rank normalised its own shard) before evaluating."""
    if not world.distributed:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
            for buffer in (module.running_mean, module.running_var):
                if buffer is not None:
                    world.sum(buffer).div_(world.size)


def train(
    learners: list[Learner],
    data: Data,
    *,
    epochs: int,
    batch_size: int,
    seed: int | Sequence[int],
    teacher: nn.Module | None = None,
    augment: bool = True,
    on_epoch_end: Callable[[int, Learner, dict], None] | None = None,
    resume: Resume | None = None,
    speed: Speed = Speed(),
    eval_train_split: bool = True,
    world: World = SINGLE,
    sync_bn: bool = False,
) -> None:
    """Train every learner for ``epochs`` epochs; ``on_epoch_end`` sees each epoch's metrics.

    ``seed`` seeds the data order and augmentation: one seed for all learners, or one per learner. Learners
    with the same seed train on the same batches, and the teacher's forward on a batch is computed once for
    all of them; each learner ends with exactly the numbers it would have trained to alone.

    With ``resume``, the full state (weights, optimiser, lr schedule, objective buffers, data-order and all
    RNG states, partial epoch sums) is saved every ``resume.every`` epochs and on SIGTERM/SIGINT (then
    ``TrainingInterrupted`` is raised); when the state file exists, training continues from it and ends
    with exactly the numbers of an uninterrupted run.

    After each epoch every learner is evaluated on the test and validation splits, and with
    ``eval_train_split`` on the training split too where p*(x) is known (the teacher's TV-to-p* curve).

    With several ranks (``world``), ``batch_size`` is the global batch: every rank draws it as one process would
    and trains on its shard, the models in DistributedDataParallel; each rank's losses are weighted by its share of
    the batch so the averaged gradient is the one process's. Epoch sums are summed over the ranks, BatchNorm running
    statistics averaged (with ``sync_bn`` on CUDA they are synchronised every step). Only rank 0 calls
    ``on_epoch_end`` and writes the training state.
    """
    started = time.perf_counter()
    callback_seconds = 0.0
    if on_epoch_end is not None:
        user_callback = on_epoch_end

        def on_epoch_end(epoch: int, learner: Learner, metrics: dict) -> None:
            nonlocal callback_seconds
            callback_started = time.perf_counter()
            user_callback(epoch, learner, metrics)
            callback_seconds += time.perf_counter() - callback_started

    device = data.train.images.device
    learner_seeds = [seed] * len(learners) if isinstance(seed, int) else [int(s) for s in seed]
    if len(learner_seeds) != len(learners):
        raise ValueError(f"{len(learner_seeds)} seeds for {len(learners)} learners")
    # one batch stream per distinct seed, each with the learners that train on it
    streams = sorted(set(learner_seeds))
    members = [[k for k, s in enumerate(learner_seeds) if s == stream] for stream in streams]
    generators = [torch.Generator(device=device).manual_seed(stream) for stream in streams]
    teacher_features = [any(learners[k].objective.needs_features for k in ks) for ks in members]
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    steps = _parallel(learners, world, device, sync_bn)
    trailing = len(data.train) % batch_size
    if world.is_main and 2 <= trailing < world.size:
        log.warning("the last batch of every epoch (%d samples) is left out: it has fewer samples than the job has "
                    "ranks (%d), so a rank would train on none; one process trains on it", trailing, world.size)
    start_epoch, skip, saved = 1, 0, None
    if resume is not None and resume.path.is_file():
        saved = _load_state(resume, learners, device, world)
        start_epoch, skip = saved["epoch"], saved["batches_done"]
        # states saved before per-learner seeds hold one "generator"
        for generator, state in zip(generators, saved.get("generators") or [saved["generator"]]):
            generator.set_state(state.to(generator.get_state().device))
        log.info("resuming from %s at epoch %d, batch %d", resume.path, start_epoch, skip)
    with _StopRequest() if resume is not None else contextlib.nullcontext() as stop:
        for epoch in range(start_epoch, epochs + 1):
            epoch_generator_states = [generator.get_state() for generator in generators]
            for learner in learners:
                learner.model.train()
                learner.objective.train()
            if saved is not None and skip:
                sums = [{k: v.to(device) for k, v in s.items()} for s in saved["sums"]]
                correct, seen = [c.to(device) for c in saved["correct"]], saved["seen"]
            else:
                sums = [dict[str, torch.Tensor]() for _ in learners]
                correct, seen = [torch.zeros((), device=device) for _ in learners], 0
            # resuming mid-epoch replays the epoch's data draws from its start, skipping the finished steps
            batches = zip(*(data.train_batches(batch_size, generator, augment, world) for generator in generators))
            for step, stream_batches in enumerate(batches):
                if step < skip:
                    continue
                global_n = min(batch_size, len(data.train) - step * batch_size)
                if world.distributed:
                    world.batch_size = global_n  # what World.gather and its shards read during this step
                share = world.size * stream_batches[0][1].numel() / global_n  # 1 in one process
                for (x, y, idx), ks, with_features in zip(stream_batches, members, teacher_features):
                    x = speed.inputs(x)
                    teacher_out = None
                    if teacher is not None:
                        with torch.no_grad(), speed.autocast(device):
                            teacher_out = _as_output(teacher(x, with_features=with_features))
                    for k in ks:
                        _step(learners[k], steps[k], x, y, idx, teacher_out, speed, device, sums[k], correct[k],
                              share)
                seen += global_n  # every stream's batch has the same size
                if stop is not None and world.any(stop.signal is not None):
                    _save_state(resume, learners, epoch, step + 1, epoch_generator_states, sums, correct, seen, world)
                    cause = f"signal {stop.signal}" if stop.signal is not None else "a signal to another rank"
                    raise TrainingInterrupted(f"stopped by {cause} in epoch {epoch} after step {step + 1}; state "
                                              f"saved to {resume.path}")
            skip = 0
            for k in range(len(learners)):
                world.sum(correct[k])
                for value in sums[k].values():
                    world.sum(value)
                _average_batchnorm(learners[k].model, world)
            for k, learner in enumerate(learners):
                _finish_epoch(k, learner, epoch, epochs, sums, correct, seen, data,
                              on_epoch_end if world.is_main else None, eval_train_split)
            if resume is not None and resume.every > 0 and (epoch % resume.every == 0 or epoch == epochs):
                _save_state(resume, learners, epoch + 1, 0, [g.get_state() for g in generators],
                            [{} for _ in learners], [torch.zeros(()) for _ in learners], 0, world)
    # bench/bench_orchestration.py reads this line: the loop's own time vs. the job's wall time
    log.info("training loop: %d epoch(s) in %.2f s, %.2f s of it in epoch-end callbacks (tracking, checkpoints)",
             epochs - start_epoch + 1, time.perf_counter() - started, callback_seconds)


def _step(learner: Learner, joint: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
          teacher_out: ModelOutput | None, speed: Speed, device: torch.device, sums: dict[str, torch.Tensor],
          correct: torch.Tensor, share: float) -> None:
    """One optimisation step of one learner; its losses and correct count accumulate on the device. ``share``: the
    ranks times this rank's fraction of the global batch (DDP averages the ranks' gradients; 1 in one process)."""
    with speed.autocast(device):
        out, losses = joint(x, teacher_out, y, idx, learner.objective.needs_features)
        total = torch.stack([v.float() for v in losses.values()]).sum()
    learner.optimizer.zero_grad(set_to_none=True)
    (total * share if share != 1 else total).backward()
    learner.optimizer.step()
    for name, value in (("loss", total), *losses.items()):
        sums[name] = sums.get(name, 0) + value.detach() * y.numel()
    correct += (out.logits.detach().argmax(1) == y).sum()


def _finish_epoch(k: int, learner: Learner, epoch: int, epochs: int, sums, correct, seen: int, data: Data,
                  on_epoch_end, eval_train_split: bool) -> None:
    lr = learner.optimizer.param_groups[0]["lr"]
    learner.scheduler.step()
    learner.objective.end_epoch(epoch)
    metrics = {f"train_{name}": (value / seen).item() for name, value in sums[k].items()}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteLossError(
            f"{learner.name}: non-finite loss in epoch {epoch}: "
            + ", ".join(f"{n}={v}" for n, v in metrics.items())
        )
    metrics["train_acc"] = correct[k].item() / seen * 100
    metrics["lr"] = lr
    metrics.update(evaluate(learner.model, data, eval_train_split))
    metrics["epoch"] = epoch
    learner.history.append(metrics)
    log.info("%s epoch %d/%d: %s", learner.name, epoch, epochs,
             " ".join(f"{n}={v:.4g}" for n, v in metrics.items() if n != "epoch"))
    if on_epoch_end is not None:
        on_epoch_end(epoch, learner, metrics)
