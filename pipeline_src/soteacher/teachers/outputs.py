"""What a teacher job leaves behind, trained or imported: ``ep<epoch>.pt`` checkpoints and ``metrics.json`` in the
teacher's folder, and its MLflow run. One writer for both kinds, so distillation and aggregation cannot tell
them apart (an imported teacher's files add ``imported_from``)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from soteacher.core import layout
from soteacher.core.io import save_torch, write_json
from soteacher.core.specs import as_dict
from soteacher.core.tracking import Run, log_links, runtime_tags
from soteacher.teachers.spec import ImportSpec, TeacherSpec


def teacher_run(spec: TeacherSpec | ImportSpec, tracking_uri: str, experiment: str, device, **tags) -> Run:
    """A new MLflow run for the teacher of a teacher (or import) job spec, with its identity as tags."""
    return Run(tracking_uri, experiment, spec.name,
               tags={"role": "teacher", **tags, "dataset": spec.data["dataset"], "arch": spec.arch,
                     "recipe": spec.recipe, "seed": spec.seed, "identity": spec.identity, **runtime_tags(device)},
               params=as_dict(spec), dataset=(spec.data, Path(spec.data_dir)))


def save_checkpoint(path: Path, model: nn.Module, spec: TeacherSpec | ImportSpec, num_classes: int, epoch: int,
                    **extra) -> None:
    """A teacher checkpoint: the weights (on the CPU) and what they are."""
    save_torch(path, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "arch": spec.arch,
                      "num_classes": num_classes, "epoch": epoch, "recipe": spec.recipe, "identity": spec.identity,
                      **extra})


def publish(spec: TeacherSpec | ImportSpec, run: Run, history: list[dict], staged: dict[int, Path], **extra) -> Path:
    """Move the staged checkpoints (epoch -> file written by ``save_checkpoint``) into the teacher's folder, write
    its ``metrics.json`` (the per-epoch ``history`` and the metrics at each checkpoint) and link both from the run.
    Called once the job has succeeded, so a teacher folder never holds a partial result."""
    out_dir = Path(spec.dir)
    checkpoints = {}
    for epoch, path in staged.items():
        checkpoints[f"checkpoint.ep{epoch}"] = out_dir / path.name
        path.replace(checkpoints[f"checkpoint.ep{epoch}"])
    metrics_file = out_dir / layout.METRICS_FILE
    write_json(metrics_file, {
        "arch": spec.arch, "recipe": spec.recipe, "seed": spec.seed, "dataset": spec.data["dataset"],
        "identity": spec.identity, "mlflow_run_id": run.run_id, **extra,
        "checkpoints": {str(h["epoch"]): h for h in history if h["epoch"] in staged}, "history": history,
    })
    log_links(run, as_dict(spec), checkpoints, metrics_file)
    return out_dir
