"""The teacher job: load the data, train one teacher (its recipe's objective) in the shared loop, save its
checkpoints, write its outputs and log its MLflow run."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from soteacher.core import layout
from soteacher.core.ranks import World, job_ranks
from soteacher.core.tracking import ending, open_runs
from soteacher.data import load as load_data
from soteacher.models import build_model
from soteacher.teachers.objective import TeacherObjective
from soteacher.teachers.outputs import publish, save_checkpoint, teacher_run
from soteacher.teachers.spec import TeacherSpec
from soteacher.training.averages import FILTER_TABLE
from soteacher.training.learner import Learner
from soteacher.training.loop import evaluated_epochs, job_options, train
from soteacher.training.optim import make_optimizer
from soteacher.training.speed import prepare_model
from soteacher.training.state import Resume, seed_everything


def teacher_eval_epochs(spec: TeacherSpec) -> frozenset[int]:
    """The epochs a teacher job evaluates: every ``eval_every``-th, the last and every checkpoint epoch (its
    metrics.json ``checkpoints`` hold evaluated metrics)."""
    return evaluated_epochs(spec.epochs, spec.eval_every, spec.checkpoint_epochs)


def run_teacher(spec: TeacherSpec, tracking_uri: str, experiment: str) -> Path:
    with job_ranks(spec.compute) as (device, world):
        return _run_teacher(spec, tracking_uri, experiment, device, world)


def _run_teacher(spec: TeacherSpec, tracking_uri: str, experiment: str, device: torch.device, world: World) -> Path:
    """Every rank trains; rank 0 alone writes (MLflow, checkpoints, metrics) and cleans up."""
    out_dir = Path(spec.dir)
    data = load_data(spec.data, Path(spec.data_dir), device)
    seed_everything(spec.seed)
    model = prepare_model(build_model(spec.arch, data.num_classes).to(device), spec.compute)
    objective = TeacherObjective(model, spec.terms, len(data.train), data.num_classes, spec.epochs, world,
                                 spec.filter_table).to(device)
    optimizer, scheduler = make_optimizer(model.parameters(), spec.optim, spec.optim.lr_of(spec.arch), spec.epochs)
    learner = Learner(f"teacher {spec.name}", model, objective, optimizer, scheduler)
    # the folder's name is the teacher's identity: a state found here was saved by this very teacher's job
    resume_dir = out_dir / layout.RESUME_DIR
    runs = open_runs(resume_dir, lambda: [teacher_run(spec, tracking_uri, experiment, device)],
                     tracking_uri) if world.is_main else []
    # staged beside the training state, moved into place only when the whole job has succeeded
    staged = {epoch: resume_dir / layout.CHECKPOINT_FILE.format(epoch=epoch) for epoch in spec.checkpoint_epochs}

    def on_epoch_end(epoch: int, _learner: Learner, metrics: dict) -> None:  # rank 0 only
        runs[0].log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        if epoch in staged:
            table = {} if objective.filter_table is None else {
                FILTER_TABLE: objective.filter_table.table.detach().cpu().clone()}  # the table as of this epoch
            save_checkpoint(staged[epoch], learner.model, spec, data.num_classes, epoch, **table)

    with ending(runs):
        train([learner], data, epochs=spec.epochs, seed=spec.seed, on_epoch_end=on_epoch_end,
              eval_epochs=teacher_eval_epochs(spec),
              resume=Resume.of_job(resume_dir / layout.RESUME_STATE, spec.compute), world=world,
              **job_options(spec.optim, spec.data["augment"], spec.compute))
        if world.is_main:
            last = learner.history[-1]
            runs[0].log_metrics({f"final_{k}": v for k, v in last.items() if k != "epoch"}, step=spec.epochs)
            publish(spec, runs[0], learner.history, staged)
    if world.is_main:
        shutil.rmtree(resume_dir, ignore_errors=True)
    return out_dir
