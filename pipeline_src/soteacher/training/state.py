"""The resumable training state: where and how often it is saved (``Resume``), saving and loading it (weights,
optimiser, lr schedule, objective buffers, data-order generators, every RNG and the partial epoch sums, per rank),
and the SIGTERM/SIGINT stop request after which the loop saves it. Also seeding the global RNGs a job starts from.

The file is written atomically and loaded with ``weights_only=True``: it holds tensors, numbers, strings and the
containers torch allows, never pickled objects.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soteacher.core.errors import CheckpointError
from soteacher.core.io import save_torch
from soteacher.core.ranks import World
from soteacher.core.settings import Compute
from soteacher.training.learner import Learner

log = logging.getLogger(__name__)


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked after each step (handlers restored on exit)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
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


def save_state(resume: Resume, learners: list[Learner], epoch: int, batches_done: int,
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


def load_state(resume: Resume, learners: list[Learner], device: torch.device, world: World) -> dict:
    """Restore every learner and this rank's RNG states from ``resume.path``; return the state with this rank's
    partial epoch sums ("sums", "correct") in place of the per-rank list."""
    try:
        state = torch.load(resume.path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot load training state {resume.path}: {type(err).__name__}: {err}; "
                              "delete it to start this job from scratch") from None
    missing = sorted({"learners", "ranks", "generators"} - set(state))
    if missing:  # saved before multi-rank jobs or per-learner seeds: its layout is read no more
        raise CheckpointError(f"training state {resume.path} was saved by an older version (it has no "
                              f"{', '.join(missing)}); delete it to start this job from scratch")
    names = [s["name"] for s in state["learners"]]
    if names != [lr.name for lr in learners]:
        raise CheckpointError(f"training state {resume.path} belongs to learners {names}, not "
                              f"{[lr.name for lr in learners]}; delete it to start from scratch")
    per_rank = state["ranks"]
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
