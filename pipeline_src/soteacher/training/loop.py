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
import time
from collections.abc import Callable, Collection, Iterable, Sequence

import torch
from torch import nn

from soteacher.core.errors import NonFiniteLossError, TrainingInterrupted
from soteacher.core.ranks import SINGLE, World
from soteacher.core.settings import Compute, Optim
from soteacher.data import Data
from soteacher.models.base import ModelOutput
from soteacher.training.evaluation import evaluate
from soteacher.training.learner import Learner
from soteacher.training.parallel import as_output, average_batchnorm, joint_steps
from soteacher.training.speed import EXACT, Speed
from soteacher.training.state import Resume, StopRequest, load_state, save_state

log = logging.getLogger(__name__)


def job_options(optim: Optim, augment: bool, compute: Compute) -> dict:
    """The ``train`` arguments every training of a job shares: batch size, augmentation and the speed switches (so
    a job's init stage and its main phase run alike)."""
    return {"batch_size": optim.batch_size, "augment": augment, "speed": Speed.from_compute(compute),
            "sync_bn": compute.sync_bn}


def evaluated_epochs(epochs: int, every: int = 1, always: Iterable[int] = ()) -> frozenset[int]:
    """The epochs after which a job evaluates its learners (``train``'s ``eval_epochs``): every ``every``-th epoch,
    the last one, and those of ``always`` (a teacher's checkpoint epochs, whose metrics its metrics.json keeps)."""
    if every < 1:
        raise ValueError(f"eval_every must be at least 1, not {every}")
    return frozenset(range(every, epochs + 1, every)) | {epochs} | {e for e in always if 1 <= e <= epochs}


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
    speed: Speed = EXACT,
    eval_train_split: bool = True,
    eval_epochs: Collection[int] | None = None,
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

    After each epoch in ``eval_epochs`` (None: every epoch; see ``evaluated_epochs``) every learner is evaluated on
    the test and validation splits, and with ``eval_train_split`` on the training split too where p*(x) is known (the
    teacher's TV-to-p* curve). The history entry of an epoch not evaluated holds its training metrics alone
    (``train_*``, ``lr``, ``epoch``). Evaluation draws no random number and leaves the BatchNorm statistics alone
    (eval mode, no gradient), so which epochs are evaluated changes no weight.

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
    steps = joint_steps(learners, world, device, sync_bn)
    trailing = len(data.train) % batch_size
    if world.is_main and 2 <= trailing < world.size:
        log.warning("the last batch of every epoch (%d samples) is left out: it has fewer samples than the job has "
                    "ranks (%d), so a rank would train on none; one process trains on it", trailing, world.size)
    start_epoch, skip, saved = 1, 0, None
    if resume is not None and resume.path.is_file():
        saved = load_state(resume, learners, device, world)
        start_epoch, skip = saved["epoch"], saved["batches_done"]
        for generator, state in zip(generators, saved["generators"]):
            generator.set_state(state.to(generator.get_state().device))
        log.info("resuming from %s at epoch %d, batch %d", resume.path, start_epoch, skip)
    with StopRequest() if resume is not None else contextlib.nullcontext() as stop:
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
                            teacher_out = as_output(teacher(x, with_features=with_features))
                    for k in ks:
                        _step(learners[k], steps[k], x, y, idx, teacher_out, speed, device, sums[k], correct[k],
                              share)
                seen += global_n  # every stream's batch has the same size
                if stop is not None and world.any(stop.signal is not None):
                    save_state(resume, learners, epoch, step + 1, epoch_generator_states, sums, correct, seen, world)
                    cause = f"signal {stop.signal}" if stop.signal is not None else "a signal to another rank"
                    raise TrainingInterrupted(f"stopped by {cause} in epoch {epoch} after step {step + 1}; state "
                                              f"saved to {resume.path}")
            skip = 0
            for k in range(len(learners)):
                world.sum(correct[k])
                for value in sums[k].values():
                    world.sum(value)
                average_batchnorm(learners[k].model, world)
            for k, learner in enumerate(learners):
                _finish_epoch(k, learner, epoch, epochs, sums, correct, seen, data,
                              on_epoch_end if world.is_main else None, eval_train_split,
                              eval_epochs is None or epoch in eval_epochs)
            if resume is not None and resume.every > 0 and (epoch % resume.every == 0 or epoch == epochs):
                save_state(resume, learners, epoch + 1, 0, [g.get_state() for g in generators],
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
                  on_epoch_end, eval_train_split: bool, evaluated: bool) -> None:
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
    if evaluated:
        metrics.update(evaluate(learner.model, data, eval_train_split))
    metrics["epoch"] = epoch
    learner.history.append(metrics)
    log.info("%s epoch %d/%d: %s", learner.name, epoch, epochs,
             " ".join(f"{n}={v:.4g}" for n, v in metrics.items() if n != "epoch"))
    if on_epoch_end is not None:
        on_epoch_end(epoch, learner, metrics)
