"""The teacher job: load the data, train one teacher (its recipe's objective) in the shared loop, save its
checkpoints, write its outputs and log its MLflow run."""

from __future__ import annotations

import shutil

import torch

from soteacher.core import layout
from soteacher.core.ranks import World, job_ranks
from soteacher.core.tracking import ending, open_runs
from soteacher.data import load as load_data
from soteacher.models import build_model
from soteacher.study.teacher_jobs import spec_teacher
from soteacher.teachers.objective import TeacherObjective
from soteacher.teachers.outputs import publish, save_checkpoint, teacher_run
from soteacher.training.loop import (
    Learner,
    Resume,
    arch_lr,
    job_options,
    make_optimizer,
    prepare_model,
    seed_everything,
    train,
)


def run_teacher(spec: dict, tracking_uri: str, experiment: str):
    with job_ranks(spec["compute"]) as (device, world):
        return _run_teacher(spec, tracking_uri, experiment, device, world)


def _run_teacher(spec: dict, tracking_uri: str, experiment: str, device: torch.device, world: World):
    """Every rank trains; rank 0 alone writes (MLflow, checkpoints, metrics) and cleans up."""
    teacher = spec_teacher(spec)
    out_dir = layout.teacher_dir(teacher)
    data = load_data(spec["data"], layout.data_dir(teacher["data"]), device)
    seed_everything(spec["seed"])
    model = prepare_model(build_model(spec["arch"], data.num_classes).to(device), spec["compute"])
    objective = TeacherObjective(model, spec["terms"], len(data.train), data.num_classes,
                                 spec["epochs"], world).to(device)
    optimizer, scheduler = make_optimizer(model.parameters(), spec["optim"], arch_lr(spec["optim"], spec["arch"]))
    learner = Learner(f"teacher {out_dir.name}", model, objective, optimizer, scheduler)
    # keyed by the spec's hash: a state saved under another config is never resumed (and is removed)
    resume_dir = out_dir / layout.RESUME_DIR / spec["config_hash"]
    if world.is_main:
        for stale in (out_dir / layout.RESUME_DIR).glob("*"):
            if stale != resume_dir:
                shutil.rmtree(stale, ignore_errors=True)
    runs = open_runs(resume_dir, lambda: [teacher_run(spec, tracking_uri, experiment, device)],
                     tracking_uri) if world.is_main else []
    # staged beside the training state, moved into place only when the whole job has succeeded
    staged = {epoch: resume_dir / layout.CHECKPOINT_FILE.format(epoch=epoch) for epoch in spec["checkpoint_epochs"]}

    def on_epoch_end(epoch: int, _learner: Learner, metrics: dict) -> None:  # rank 0 only
        runs[0].log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        if epoch in staged:
            save_checkpoint(staged[epoch], learner.model, spec, data.num_classes, epoch)

    with ending(runs):
        train([learner], data, epochs=spec["epochs"], seed=spec["seed"], on_epoch_end=on_epoch_end,
              resume=Resume.of_job(resume_dir / layout.RESUME_STATE, spec["compute"]), world=world,
              **job_options(spec))
        if world.is_main:
            last = learner.history[-1]
            runs[0].log_metrics({f"final_{k}": v for k, v in last.items() if k != "epoch"}, step=spec["epochs"])
            publish(spec, runs[0], learner.history, staged)
    if world.is_main:
        shutil.rmtree(resume_dir.parent, ignore_errors=True)
    return out_dir
