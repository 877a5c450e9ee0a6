"""Teacher and distillation jobs: load data, build models, run the shared loop, write outputs, log runs."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from soteacher.common import devices, jobs
from soteacher.common.io import load_checkpoint, read_json, save_torch, write_json
from soteacher.common.tracking import Run, log_links, runtime_tags
from soteacher.teacher_side.data import Data
from soteacher.teacher_side.data import load as load_data
from soteacher.teacher_side.loop import (
    Learner,
    Resume,
    Speed,
    TrainingInterrupted,
    make_optimizer,
    predict,
    prepare_model,
    seed_everything,
    train,
)
from soteacher.teacher_side.metrics import agreement, kl_between
from soteacher.teacher_side.models import build_model, feature_shapes

log = logging.getLogger(__name__)


def _lr(optim: dict, arch: str) -> float:
    return optim["lr_by_arch"].get(arch, optim["lr"])


def _resume(resume_dir: Path, name: str, spec: dict) -> Resume | None:
    every = spec["compute"]["resume_every"]
    return Resume(resume_dir / name, every) if every > 0 else None


def _open_runs(resume_dir: Path, make_runs: Callable[[], list[Run]], uri: str) -> list[Run]:
    """New MLflow runs, or, when resuming a killed job, the runs it had opened (they continue)."""
    ids_file = resume_dir / "mlflow_runs.json"
    if ids_file.is_file():
        runs = [Run.reopen(uri, run_id) for run_id in read_json(ids_file)]
        log.info("resuming MLflow runs %s", ", ".join(r.run_id for r in runs))
        return runs
    runs = make_runs()
    write_json(ids_file, [r.run_id for r in runs])
    return runs


def _end_runs(runs: list[Run], err: BaseException | None) -> None:
    status = "FINISHED" if err is None else ("KILLED" if isinstance(err, TrainingInterrupted) else "FAILED")
    for run in runs:
        run.end(status)


def run_teacher(spec: dict, tracking_uri: str) -> Path:
    dataset = spec["data"]["dataset"]
    out_dir = Path(jobs.TEACHER_DIR.format(dataset=dataset, tarch=spec["arch"], recipe=spec["recipe_name"],
                                           tseed=spec["seed"]))
    device = devices.setup(spec["compute"])
    data = load_data(spec["data"], Path(jobs.DATA_DIR.format(dataset=dataset)), device)
    seed_everything(spec["seed"])
    model = prepare_model(build_model(spec["arch"], data.num_classes).to(device), spec["compute"])
    from soteacher.teacher_side.objective import TeacherObjective

    objective = TeacherObjective(model, spec["recipe"], len(data.train), data.num_classes, spec["epochs"]).to(device)
    optimizer, scheduler = make_optimizer(model.parameters(), spec["optim"], _lr(spec["optim"], spec["arch"]))
    learner = Learner(f"teacher {spec['arch']}-{spec['recipe_name']}-s{spec['seed']}", model, objective,
                      optimizer, scheduler)
    # keyed by the spec's hash: a state saved under another config is never resumed (and is removed)
    resume_dir = out_dir / ".resume" / spec["config_hash"]
    for stale in (out_dir / ".resume").glob("*"):
        if stale != resume_dir:
            shutil.rmtree(stale, ignore_errors=True)
    [run] = _open_runs(resume_dir, lambda: [Run(
        tracking_uri, spec["name"], out_dir.name,
        tags={"role": "teacher", "dataset": dataset, "arch": spec["arch"], "recipe": spec["recipe_name"],
              "seed": spec["seed"], "config_hash": spec["config_hash"], **runtime_tags(device)},
        params=spec)], tracking_uri)

    def on_epoch_end(epoch: int, _learner: Learner, metrics: dict) -> None:
        run.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        if epoch in spec["checkpoint_epochs"]:
            # staged under .resume/ and moved into place only when the whole job has succeeded
            save_torch(resume_dir / f"ep{epoch}.pt", {
                "model": model.state_dict(), "arch": spec["arch"], "num_classes": data.num_classes,
                "epoch": epoch, "recipe": spec["recipe_name"], "config_hash": spec["config_hash"],
            })

    try:
        train([learner], data, epochs=spec["epochs"], batch_size=spec["optim"]["batch_size"], seed=spec["seed"],
              augment=spec["data"]["augment"], on_epoch_end=on_epoch_end,
              resume=_resume(resume_dir, "state.pt", spec), speed=Speed.from_compute(spec["compute"]))
        last = learner.history[-1]
        run.log_metrics({f"final_{k}": v for k, v in last.items() if k != "epoch"}, step=spec["epochs"])
        checkpoints = {str(h["epoch"]): h for h in learner.history if h["epoch"] in spec["checkpoint_epochs"]}
        for epoch in spec["checkpoint_epochs"]:
            (resume_dir / f"ep{epoch}.pt").replace(out_dir / f"ep{epoch}.pt")
        write_json(out_dir / "metrics.json", {
            "arch": spec["arch"], "recipe": spec["recipe_name"], "seed": spec["seed"], "dataset": dataset,
            "config_hash": spec["config_hash"], "mlflow_run_id": run.run_id,
            "checkpoints": checkpoints, "history": learner.history,
        })
        log_links(run, spec, {f"checkpoint.ep{e}": out_dir / f"ep{e}.pt" for e in spec["checkpoint_epochs"]},
                  out_dir / "metrics.json")
    except BaseException as err:
        _end_runs([run], err)
        raise
    _end_runs([run], None)
    shutil.rmtree(resume_dir.parent, ignore_errors=True)
    return out_dir


def _init_stage(learners: list[Learner], seeds: list[int], spec: dict, data: Data, teacher: nn.Module,
                log_metrics: Callable[[Learner, dict, int], None], resume_dir: Path) -> dict[str, list[dict]]:
    """Run the init phase of staged methods (AB, FT, FSP; see ``soteacher.student_side.methods.staged``).

    Learners whose method has ``init_epochs > 0`` train on the method's init objective alone, grouped by
    their number of init epochs, each group in one call of the shared loop with the teacher frozen. Each
    gets a fresh SGD optimiser (constant lr) over its student and method parameters; only those the init
    objective reaches get gradients. Every staged method's ``end_init()`` runs afterwards. Returns the
    init-phase metrics per learner name.
    """
    from soteacher.student_side.methods.staged import InitStage

    groups: dict[int, list[tuple[Learner, int]]] = {}
    for learner, seed in zip(learners, seeds):
        epochs = getattr(learner.objective, "init_epochs", 0)
        if epochs > 0:
            groups.setdefault(epochs, []).append((learner, seed))
    histories: dict[str, list[dict]] = {}
    optim = {**spec["optim"], "lr_milestones": []}
    by_name = {learner.name: learner for learner in learners}

    def on_epoch_end(epoch: int, init_learner: Learner, metrics: dict) -> None:
        log_metrics(by_name[init_learner.name], {f"init_{k}": v for k, v in metrics.items() if k != "epoch"}, epoch)

    for epochs, group in sorted(groups.items()):
        init_learners = []
        for learner, _ in group:
            params = [p for p in [*learner.model.parameters(), *learner.objective.parameters()] if p.requires_grad]
            init_lr = learner.objective.init_lr or _lr(spec["optim"], spec["student"])
            optimizer, scheduler = make_optimizer(params, optim, init_lr)
            init_learners.append(Learner(learner.name, learner.model, InitStage(learner.objective), optimizer,
                                         scheduler))
        train(init_learners, data, epochs=epochs, batch_size=spec["optim"]["batch_size"],
              seed=[seed for _, seed in group],
              teacher=teacher, augment=spec["data"]["augment"], on_epoch_end=on_epoch_end,
              resume=_resume(resume_dir, f"init{epochs}.pt", spec), eval_train_split=False)
        histories.update({lr.name: lr.history for lr in init_learners})
    for learner in learners:
        if hasattr(learner.objective, "end_init"):
            learner.objective.end_init()
    return histories


def student_summary(history: list[dict], teacher_test_logits: torch.Tensor | None,
                    student_test_logits: torch.Tensor) -> dict:
    """A student's headline numbers: test accuracy after the last epoch and at the best epoch, that epoch chosen
    on the validation split when there is one (else on test, the optimistic choice; ``best_chosen_on`` says
    which), its TV to p* on test, and its fidelity to the teacher on test (top-1 agreement, KL(teacher ‖ student);
    not for a student trained without one)."""
    chosen_on = "val" if "val_acc" in history[-1] else "test"
    best = max(history, key=lambda m: m[f"{chosen_on}_acc"])  # the first of equal epochs
    summary = {"last_acc": history[-1]["test_acc"], "best_acc": best["test_acc"], "best_epoch": best["epoch"],
               "best_chosen_on": chosen_on}
    if teacher_test_logits is not None:
        summary["agreement"] = agreement(teacher_test_logits, student_test_logits)
        summary["kl_teacher_student"] = kl_between(teacher_test_logits, student_test_logits)
    if "tv_pstar_test" in history[-1]:
        summary["last_tv_pstar_test"] = history[-1]["tv_pstar_test"]
    return summary


def run_distill(spec: dict, tracking_uri: str) -> list[Path]:
    dataset = spec["data"]["dataset"]
    t = spec["teacher"]  # None: the student trained alone
    device = devices.setup(spec["compute"])
    data = load_data(spec["data"], Path(jobs.DATA_DIR.format(dataset=dataset)), device)
    teacher, teacher_info, teacher_sample = None, {}, None
    if t is not None:
        teacher_dir = Path(jobs.TEACHER_DIR.format(dataset=dataset, tarch=t["arch"], recipe=t["recipe"],
                                                   tseed=t["seed"]))
        ckpt = load_checkpoint(teacher_dir / f"ep{t['epoch']}.pt")
        teacher = build_model(t["arch"], data.num_classes)
        teacher.load_state_dict(ckpt["model"])
        prepare_model(teacher.to(device).eval(), spec["compute"])
        teacher_info = read_json(teacher_dir / "metrics.json")
        teacher_sample = feature_shapes(teacher, data.image_shape)
    from soteacher.student_side.methods import METHODS

    # one student per seed x method; a seed gives every method the same student initialisation and batch order
    members = [(seed, method_name) for seed in spec["seeds"] for method_name in spec["methods"]]
    learners, out_dirs = [], []
    for seed, method_name in members:
        seed_everything(seed)
        student = prepare_model(build_model(spec["student"], data.num_classes).to(device), spec["compute"])
        method = METHODS[method_name](spec["methods"][method_name], feature_shapes(student, data.image_shape),
                                     teacher_sample, len(data.train)).to(device)
        params = list(student.parameters()) + list(method.parameters())
        optimizer, scheduler = make_optimizer(params, spec["optim"], _lr(spec["optim"], spec["student"]))
        learners.append(Learner(f"{method_name} {spec['student']}-s{seed}", student, method, optimizer, scheduler))
        where = {"dataset": dataset, "method": method_name, "student": spec["student"], "seed": seed}
        if t is not None:
            where |= {"tarch": t["arch"], "recipe": t["recipe"], "tseed": t["seed"], "epoch": t["epoch"]}
        out_dirs.append(Path(jobs.student_metrics(where)).parent)
    seeds = [seed for seed, _ in members]
    # beside the students: the teacher checkpoint's folder, or the student-alone folder
    job_root = out_dirs[0].parents[2] if t is not None else out_dirs[0].parents[1]
    resume_dir = job_root / ".resume" / f"{spec['student']}-{spec['config_hash']}"

    def member_spec(seed: int, method_name: str) -> dict:
        """The job spec as one student of it sees it: its own seed and method (MLflow params, spec.json)."""
        return {k: v for k, v in spec.items() if k not in ("methods", "seeds")} | {
            "seed": seed, "method": method_name, "method_cfg": spec["methods"][method_name]}

    teacher_tags = {} if t is None else {"teacher_arch": t["arch"], "recipe": t["recipe"], "teacher_seed": t["seed"],
                                         "epoch": t["epoch"]}

    def make_run(seed: int, method_name: str) -> Run:
        return Run(tracking_uri, spec["name"], f"{method_name}-{spec['student']}-s{seed}",
                   tags={"role": "student", "dataset": dataset, **teacher_tags,
                         "method": method_name, "student": spec["student"], "seed": seed,
                         "config_hash": spec["config_hash"], **runtime_tags(device)},
                   params=member_spec(seed, method_name), parent_run_id=teacher_info.get("mlflow_run_id"))

    runs = _open_runs(resume_dir, lambda: [make_run(*member) for member in members], tracking_uri)
    run_of = {id(lr): r for lr, r in zip(learners, runs)}

    def on_epoch_end(epoch: int, learner: Learner, metrics: dict) -> None:
        run_of[id(learner)].log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)

    try:
        main_state = _resume(resume_dir, "state.pt", spec)
        if main_state is not None and main_state.path.is_file():
            init_histories = {}  # the init stage finished before the interruption; its effects are in the state
            for learner in learners:
                if hasattr(learner.objective, "end_init"):
                    learner.objective.end_init()
        else:
            init_histories = _init_stage(
                learners, seeds, spec, data, teacher,
                lambda learner, metrics, step: run_of[id(learner)].log_metrics(metrics, step=step), resume_dir)
        train(learners, data, epochs=spec["epochs"], batch_size=spec["optim"]["batch_size"], seed=seeds,
              teacher=teacher, augment=spec["data"]["augment"], on_epoch_end=on_epoch_end, resume=main_state,
              speed=Speed.from_compute(spec["compute"]), eval_train_split=False)
        teacher_test_logits = None if teacher is None else predict(teacher, data, "test")
        for learner, run, out_dir, (seed, method_name) in zip(learners, runs, out_dirs, members):
            summary = student_summary(learner.history, teacher_test_logits, predict(learner.model, data, "test"))
            # best_chosen_on (a split name) is in metrics.json; MLflow metrics are numbers
            run.log_metrics({k: v for k, v in summary.items() if k != "best_chosen_on"}, step=spec["epochs"])
            save_torch(out_dir / "model.pt", {"model": learner.model.state_dict(),
                                              "method": learner.objective.state_dict(),
                                              "arch": spec["student"], "num_classes": data.num_classes})
            write_json(out_dir / "metrics.json", {
                **summary, "method": method_name, "student": spec["student"], "seed": seed,
                "teacher": None if t is None else {
                    **t, "test_acc": teacher_info["checkpoints"][str(t["epoch"])]["test_acc"],
                    "mlflow_run_id": teacher_info.get("mlflow_run_id")},
                "config_hash": spec["config_hash"], "mlflow_run_id": run.run_id, "history": learner.history,
                **({"init_history": init_histories[learner.name]} if learner.name in init_histories else {}),
            })
            links = {"model": out_dir / "model.pt"}
            if t is not None:
                links["teacher_checkpoint"] = teacher_dir / f"ep{t['epoch']}.pt"
            log_links(run, member_spec(seed, method_name), links, out_dir / "metrics.json")
    except BaseException as err:
        _end_runs(runs, err)
        raise
    _end_runs(runs, None)
    shutil.rmtree(resume_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        resume_dir.parent.rmdir()  # the checkpoint's .resume/ folder, once no other group uses it
    return out_dirs
