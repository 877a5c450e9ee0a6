"""What a teacher job leaves behind, trained or imported: ``ep<epoch>.pt`` checkpoints and ``metrics.json`` in the
teacher's folder, and its MLflow run. One writer for both kinds, so distillation and aggregation cannot tell
them apart (an imported teacher's files add ``imported_from``)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from soteacher.core import layout
from soteacher.core.io import save_torch, write_json
from soteacher.core.tracking import Run, log_links, runtime_tags
from soteacher.study.teacher_jobs import spec_teacher


def teacher_run(spec: dict, tracking_uri: str, experiment: str, device, **tags) -> Run:
    """A new MLflow run for the teacher of a teacher (or import) job spec, with its identity as tags."""
    teacher = spec_teacher(spec)
    return Run(tracking_uri, experiment, layout.teacher_dir(teacher).name,
               tags={"role": "teacher", **tags, "dataset": spec["data"]["dataset"], "arch": spec["arch"],
                     "recipe": spec["recipe"], "seed": spec["seed"], "config_hash": spec["config_hash"],
                     **runtime_tags(device)},
               params=spec)


def save_checkpoint(path: Path, model: nn.Module, spec: dict, num_classes: int, epoch: int, **extra) -> None:
    """A teacher checkpoint: the weights (on the CPU) and what they are."""
    save_torch(path, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "arch": spec["arch"],
                      "num_classes": num_classes, "epoch": epoch, "recipe": spec["recipe"],
                      "config_hash": spec["config_hash"], **extra})


def publish(spec: dict, run: Run, history: list[dict], staged: dict[int, Path], **extra) -> Path:
    """Move the staged checkpoints (epoch -> file written by ``save_checkpoint``) into the teacher's folder, write
    its ``metrics.json`` (the per-epoch ``history`` and the metrics at each checkpoint) and link both from the run.
    Called once the job has succeeded, so a teacher folder never holds a partial result."""
    teacher = spec_teacher(spec)
    checkpoints = {}
    for epoch, path in staged.items():
        checkpoints[f"checkpoint.ep{epoch}"] = layout.teacher_checkpoint(teacher, epoch)
        path.replace(checkpoints[f"checkpoint.ep{epoch}"])
    metrics_file = layout.teacher_metrics(teacher)
    write_json(metrics_file, {
        "arch": spec["arch"], "recipe": spec["recipe"], "seed": spec["seed"], "dataset": spec["data"]["dataset"],
        "config_hash": spec["config_hash"], "mlflow_run_id": run.run_id, **extra,
        "checkpoints": {str(h["epoch"]): h for h in history if h["epoch"] in staged}, "history": history,
    })
    log_links(run, spec, checkpoints, metrics_file)
    return metrics_file.parent
