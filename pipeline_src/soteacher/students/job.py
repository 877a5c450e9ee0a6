"""The distill job: every (seed, method) student of one teacher checkpoint, or the teacherless students, in one
run of the shared loop (the teacher's forward computed once per batch for all of them); then each student's
summary, weights and MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from soteacher.core import layout
from soteacher.core.io import load_checkpoint, read_json, save_torch, write_json
from soteacher.core.ranks import SINGLE, World, job_ranks
from soteacher.core.specs import as_dict
from soteacher.core.tracking import Run, ending, log_links, open_runs, runtime_tags
from soteacher.data import Data
from soteacher.data import load as load_data
from soteacher.methods import METHODS, DistillMethod, InitStage
from soteacher.models import build_model, feature_shapes
from soteacher.models.base import ModelOutput
from soteacher.students.spec import DistillSpec, StudentRun
from soteacher.training.evaluation import predict
from soteacher.training.learner import Learner
from soteacher.training.loop import evaluated_epochs, job_options, train
from soteacher.training.metrics import agreement, kl_between
from soteacher.training.optim import make_optimizer
from soteacher.training.speed import prepare_model
from soteacher.training.state import Resume, seed_everything

log = logging.getLogger(__name__)


def init_stage(learners: list[Learner], methods: list[DistillMethod], seeds: list[int], spec: DistillSpec, data: Data,
               teacher: nn.Module | None, log_metrics: Callable[[Learner, dict, int], None],
               resume_dir: Path, world: World = SINGLE) -> dict[str, list[dict]]:
    """Run the init phase of staged methods (AB, FT, FSP; see ``soteacher.methods.staged``).

    Learners whose method has ``init_epochs > 0`` train on the method's init objective alone, grouped by
    their number of init epochs, each group in one call of the shared loop with the teacher frozen and the job's
    loop options (batch size, augmentation, speed switches). Each gets a fresh SGD optimiser (constant lr) over
    its student and method parameters; only those the init objective reaches get gradients. Every method's
    ``end_init()`` runs afterwards. Returns the init-phase metrics per learner name.
    """
    groups: dict[int, list[tuple[Learner, DistillMethod, int]]] = {}
    for learner, method, seed in zip(learners, methods, seeds):
        if method.init_epochs > 0:
            groups.setdefault(method.init_epochs, []).append((learner, method, seed))
    histories: dict[str, list[dict]] = {}
    optim = dataclasses.replace(spec.optim, lr_schedule="multistep", lr_milestones=[])  # a constant lr
    by_name = {learner.name: learner for learner in learners}

    def on_epoch_end(epoch: int, init_learner: Learner, metrics: dict) -> None:
        log_metrics(by_name[init_learner.name], {f"init_{k}": v for k, v in metrics.items() if k != "epoch"}, epoch)

    for epochs, group in sorted(groups.items()):
        init_learners = []
        for learner, method, _ in group:
            params = [p for p in [*learner.model.parameters(), *method.parameters()] if p.requires_grad]
            lr = method.init_lr or spec.optim.lr_of(spec.student)
            optimizer, scheduler = make_optimizer(params, optim, lr, epochs)
            init_learners.append(Learner(learner.name, learner.model, InitStage(method), optimizer, scheduler))
        resume = Resume.of_job(resume_dir / layout.INIT_STATE.format(epochs=epochs), spec.compute)
        train(init_learners, data, epochs=epochs, seed=[seed for _, _, seed in group], teacher=teacher,
              on_epoch_end=on_epoch_end, resume=resume, eval_train_split=False, world=world,
              **job_options(spec.optim, spec.data["augment"], spec.compute))
        histories.update({lr.name: lr.history for lr in init_learners})
    for method in methods:
        method.end_init()
    return histories


def student_summary(history: list[dict], teacher_test_logits: torch.Tensor | None,
                    student_test_logits: torch.Tensor) -> dict:
    """A student's headline numbers: test accuracy after the last epoch and at the best epoch, that epoch chosen
    on the validation split when there is one (else on test, the optimistic choice; ``best_chosen_on`` says
    which), its TV to p* on test, and its fidelity to the teacher on test (top-1 agreement, KL(teacher ‖ student);
    not for a student trained without one). The best epoch is one of the evaluated epochs (those with test_acc;
    with ``distill.eval_every`` > 1 the others hold training metrics alone); the last epoch is always evaluated."""
    chosen_on = "val" if "val_acc" in history[-1] else "test"
    evaluated = [m for m in history if f"{chosen_on}_acc" in m]
    best = max(evaluated, key=lambda m: m[f"{chosen_on}_acc"])  # the first of equal epochs
    summary = {"last_acc": history[-1]["test_acc"], "best_acc": best["test_acc"], "best_epoch": best["epoch"],
               "best_chosen_on": chosen_on}
    if teacher_test_logits is not None:
        summary["agreement"] = agreement(teacher_test_logits, student_test_logits)
        summary["kl_teacher_student"] = kl_between(teacher_test_logits, student_test_logits)
    if "tv_pstar_test" in history[-1]:
        summary["last_tv_pstar_test"] = history[-1]["tv_pstar_test"]
    return summary


def build_method(spec: DistillSpec, name: str, student: nn.Module, data: Data, teacher_sample: ModelOutput | None,
                 teacher_checkpoint: dict | None, world: World = SINGLE) -> DistillMethod:
    """Method ``name`` of a student as the job builds it (on the CPU or the student's device; the caller moves it):
    sized on sample outputs, then handed the job's data and loaded teacher checkpoint (``attach``: the per-sample
    targets of oracle and filter_kd)."""
    method = METHODS[name](spec.methods[name], feature_shapes(student, data.image_shape), teacher_sample,
                           len(data.train), world)
    method.attach(data, teacher_checkpoint)
    return method


def run_distill(spec: DistillSpec, tracking_uri: str, experiment: str) -> list[Path]:
    with job_ranks(spec.compute) as (device, world):
        return _run_distill(spec, tracking_uri, experiment, device, world)


def _run_distill(spec: DistillSpec, tracking_uri: str, experiment: str, device: torch.device,
                 world: World) -> list[Path]:
    """Every rank trains; rank 0 alone writes (MLflow, weights, metrics) and cleans up."""
    t = spec.teacher  # None: the teacherless students (vanilla, oracle)
    data = load_data(spec.data, Path(spec.data_dir), device)
    teacher, teacher_info, teacher_sample, ckpt = None, {}, None, None
    if t is None:
        wrong = [m for m in spec.methods if METHODS[m].needs_teacher]
        if wrong:
            raise ValueError(f"methods {wrong} need a teacher; a job without a teacher trains teacherless ones only")
    else:
        ckpt = load_checkpoint(Path(t.checkpoint))
        teacher = build_model(t.arch, data.num_classes)
        teacher.load_state_dict(ckpt["model"])
        prepare_model(teacher.to(device).eval(), spec.compute)
        teacher_info = read_json(Path(t.metrics))
        teacher_sample = feature_shapes(teacher, data.image_shape)

    # a seed gives every method the same student initialisation and batch order
    learners, methods = [], []
    for member in spec.students:
        seed_everything(member.seed)
        student = prepare_model(build_model(spec.student, data.num_classes).to(device), spec.compute)
        method = build_method(spec, member.method, student, data, teacher_sample, ckpt, world).to(device)
        params = list(student.parameters()) + list(method.parameters())
        optimizer, scheduler = make_optimizer(params, spec.optim, spec.optim.lr_of(spec.student), spec.epochs)
        learners.append(Learner(f"{member.method} {spec.student}-s{member.seed}", student, method, optimizer,
                                scheduler))
        methods.append(method)
    seeds = spec.seeds
    resume_dir = Path(spec.resume_dir)

    def member_spec(member: StudentRun) -> dict:
        """The job spec as one student of it sees it: its own seed, method and identity (MLflow params, spec.json)."""
        return {k: v for k, v in as_dict(spec).items() if k not in ("methods", "students")} | {
            **as_dict(member), "method_params": spec.methods[member.method]}

    teacher_tags = {} if t is None else {"teacher_arch": t.arch, "recipe": t.recipe, "teacher_seed": t.seed,
                                         "epoch": t.epoch}

    def make_run(member: StudentRun) -> Run:
        return Run(tracking_uri, experiment, f"{member.method}-{spec.student}-s{member.seed}",
                   tags={"role": "student", "dataset": spec.data["dataset"], **teacher_tags,
                         "method": member.method, "student": spec.student, "seed": member.seed,
                         "identity": member.identity, **runtime_tags(device)},
                   params=member_spec(member), parent_run_id=teacher_info.get("mlflow_run_id"),
                   dataset=(spec.data, Path(spec.data_dir)))

    runs = open_runs(resume_dir, lambda: [make_run(member) for member in spec.students],
                     tracking_uri) if world.is_main else []
    run_of = {id(lr): r for lr, r in zip(learners, runs)}

    def on_epoch_end(epoch: int, learner: Learner, metrics: dict) -> None:  # rank 0 only
        run_of[id(learner)].log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)

    options = job_options(spec.optim, spec.data["augment"], spec.compute)
    with ending(runs):
        main_state = Resume.of_job(resume_dir / layout.RESUME_STATE, spec.compute)
        if main_state is not None and main_state.path.is_file():
            init_histories = {}  # the init stage finished before the interruption; its effects are in the state
            for method in methods:
                method.end_init()
        else:
            init_histories = init_stage(
                learners, methods, seeds, spec, data, teacher,
                lambda learner, metrics, step: run_of[id(learner)].log_metrics(metrics, step=step), resume_dir, world)
        train(learners, data, epochs=spec.epochs, seed=seeds, teacher=teacher, on_epoch_end=on_epoch_end,
              resume=main_state, eval_train_split=False, eval_epochs=evaluated_epochs(spec.epochs, spec.eval_every),
              world=world, **options)
        out_dirs = [Path(member.dir) for member in spec.students]
        if not world.is_main:
            return out_dirs
        teacher_test_logits = None if teacher is None else predict(teacher, data, "test")
        for learner, run, out_dir, member in zip(learners, runs, out_dirs, spec.students):
            summary = student_summary(learner.history, teacher_test_logits, predict(learner.model, data, "test"))
            # best_chosen_on (a split name) is in metrics.json; MLflow metrics are numbers
            run.log_metrics({k: v for k, v in summary.items() if k != "best_chosen_on"}, step=spec.epochs)
            model_file, metrics_file = out_dir / layout.STUDENT_MODEL_FILE, out_dir / layout.METRICS_FILE
            save_torch(model_file, {"model": learner.model.state_dict(), "method": learner.objective.state_dict(),
                                    "arch": spec.student, "num_classes": data.num_classes})
            write_json(metrics_file, {
                **summary, "method": member.method, "student": spec.student, "seed": member.seed,
                "teacher": None if t is None else {
                    **as_dict(t), "test_acc": teacher_info["checkpoints"][str(t.epoch)]["test_acc"],
                    "mlflow_run_id": teacher_info.get("mlflow_run_id")},
                "identity": member.identity, "mlflow_run_id": run.run_id, "history": learner.history,
                **({"init_history": init_histories[learner.name]} if learner.name in init_histories else {}),
            })
            links = {"model": model_file}
            if t is not None:
                links["teacher_checkpoint"] = Path(t.checkpoint)
            log_links(run, member_spec(member), links, metrics_file)
    shutil.rmtree(resume_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        resume_dir.parent.rmdir()  # the checkpoint's .resume/ folder, once no other job uses it
    return out_dirs
