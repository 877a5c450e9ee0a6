"""Share and reuse: importing published teachers, MLflow runs linked to exact files, a DVC remote round trip."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from soteacher.core.io import CheckpointError
from soteacher.core.tracking import file_md5
from soteacher.models import build_model
from soteacher.study import config as config_mod
from soteacher.study import student_jobs as jobs
from soteacher.study import teacher_jobs
from soteacher.teachers.importer import convert, load_strict, read_reference, state_dict_of
from tests.helpers import BIN, REPO, TINY_CONFIG, copy_workflow, dry_run_jobs, run, subprocess_env

REF_PATH = "refs/resnet8_vanilla/ckpt_epoch_240.pth"


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


def reference_checkpoint(path: Path, num_classes: int = 4, **extra) -> torch.nn.Module:
    """A teacher file in RepDistiller/mdistiller's published format, from one of our models."""
    torch.manual_seed(123)
    model = build_model("resnet8", num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "epoch": 240, "best_acc": torch.tensor(71.25),
                "optimizer": optimizer.state_dict(), **extra}, path)
    return model.eval()


# --- fast: reading reference files, strict loading, config ---------------------------------------------------


def test_reference_format_loads_and_pickled_objects_are_named(tmp_path):
    reference_checkpoint(tmp_path / "ok.pth")
    obj = read_reference(tmp_path / "ok.pth")
    assert set(obj) == {"model", "epoch", "best_acc", "optimizer"}

    reference_checkpoint(tmp_path / "np.pth", accuracy=np.float64(71.25))
    with pytest.raises(CheckpointError) as err:
        read_reference(tmp_path / "np.pth")
    text = str(err.value)
    assert "weights_only=True" in text and "multiarray.scalar" in text
    assert "under key 'accuracy'" in text
    assert "python -m soteacher convert-checkpoint" in text and "--trust-source" in text

    converted = convert(tmp_path / "np.pth", tmp_path / "converted.pth")
    assert converted["accuracy"] == 71.25 and converted["epoch"] == 240 and "optimizer" not in converted
    assert read_reference(tmp_path / "converted.pth")["accuracy"] == 71.25


def test_strict_loading_names_missing_unexpected_and_misshaped_keys(tmp_path):
    state = build_model("resnet8", 4).state_dict()
    state.pop("fc.weight")
    state["head.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_strict(build_model("resnet8", 4), state, "resnet8", tmp_path / "x.pth")
    text = str(err.value)
    assert "1 missing keys: fc.weight" in text and "1 unexpected keys: head.extra" in text
    with pytest.raises(CheckpointError, match=r"shape mismatches: fc.weight \(4, 64\) \(expected \(10, 64\)\)"):
        load_strict(build_model("resnet8", 10), build_model("resnet8", 4).state_dict(), "resnet8", Path("x"))
    # a DataParallel prefix is dropped; a bare state dict is accepted
    plain = build_model("resnet8", 4).state_dict()
    assert state_dict_of({"model": {f"module.{k}": v for k, v in plain.items()}}, Path("x")).keys() == plain.keys()
    assert state_dict_of(dict(plain), Path("x")).keys() == plain.keys()


def test_git_tags_say_which_commit_ran_and_whether_the_tree_was_dirty(tmp_path, monkeypatch):
    from soteacher.core import tracking

    monkeypatch.setattr(tracking, "REPO_ROOT", tmp_path)
    assert (tracking.git_commit(), tracking.git_dirty()) == ("unknown", "unknown")  # not a repository
    run(["git", "init", "-q"], tmp_path)
    (tmp_path / "code.py").write_text("x = 1\n")
    run(["git", "add", "code.py"], tmp_path)
    run(["git", "commit", "-qm", "c"], tmp_path)
    (tmp_path / "results.csv").write_text("untracked output\n")  # untracked files do not count
    assert len(tracking.git_commit()) == 40 and tracking.git_dirty() == "false"
    (tmp_path / "code.py").write_text("x = 2\n")
    assert tracking.git_dirty() == "true"


def test_imports_join_the_grid_with_their_one_epoch():
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["teacher"]["imports"] = {"ref": {"arch": "resnet8", "path": REF_PATH}}
    cfg = config_mod.validate(raw, deep=False)
    assert cfg["teacher"]["imports"]["ref"] == {"arch": "resnet8", "path": REF_PATH, "epoch": 240, "seed": 0}
    teachers = teacher_jobs.teacher_jobs(cfg)
    assert {t["recipe"] for t in teachers} == {"standard", "soteacher", "ref"}
    ref_groups = [g for g in jobs.student_groups(cfg) if g["recipe"] == "ref"]
    assert [g["epoch"] for g in ref_groups] == [240]
    assert teacher_jobs.import_spec(cfg, "ref").source == REF_PATH

    raw["teacher"]["imports"] = {"standard": {"arch": "resnet8", "path": "x"}, "bad": {"arch": "nope", "path": "y"}}
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(raw, deep=False)
    assert "teacher.imports.standard: the name is also a teacher.recipes entry" in str(err.value)
    assert "teacher.imports.bad.arch: unknown architecture 'nope'" in str(err.value)


def test_import_paths_are_checked_before_any_job(tmp_path, monkeypatch):
    """A missing checkpoint is named at start-up (deep check), not skipped; a brace would be a wildcard."""
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["teacher"]["imports"] = {"ref": {"arch": "resnet8", "path": REF_PATH}}
    with pytest.raises(config_mod.ConfigError, match=f"teacher.imports.ref.path: no file '{REF_PATH}'"):
        config_mod.validate(raw)
    (tmp_path / REF_PATH).parent.mkdir(parents=True)
    (tmp_path / REF_PATH).write_bytes(b"")
    assert config_mod.validate(raw)["teacher"]["imports"]["ref"]["path"] == REF_PATH
    raw["teacher"]["imports"]["ref"]["path"] = "refs/{arch}.pth"
    with pytest.raises(config_mod.ConfigError, match="contains a brace"):
        config_mod.validate(raw, deep=False)


# --- slow: a study with an imported teacher, logged to a real MLflow server -----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_study(tmp_path_factory):
    """A tiny study (one trained recipe + one imported teacher) logged to an `mlflow server` on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    (root / "work").mkdir()
    work = copy_workflow(root / "work")
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["teacher"].update(epochs=2, checkpoint_every=2, recipes={"standard": {"ce": {}}},
                          imports={"ref": {"arch": "resnet8", "path": REF_PATH, "epoch": 240}})
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    reference = reference_checkpoint(work / REF_PATH)
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")],
        cwd=root, env=subprocess_env(), stdout=open(root / "server.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.time() + 300  # ends when it answers (or exits); its start-up slows with the machine's load
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError("mlflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(1)
        run(["snakemake", "--cores", "2"], work, MLFLOW_TRACKING_URI=uri)
        yield work, uri, reference
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own session: it and its workers, nothing else
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_imported_teacher_gives_identical_logits_and_students(served_study):
    work, _, reference = served_study
    [tdir] = work.glob("results/teachers/synthetic-*/resnet8-ref-s0-*")
    ours = torch.load(tdir / "ep240.pt", map_location="cpu", weights_only=True)
    assert ours["arch"] == "resnet8" and ours["epoch"] == 240 and ours["recipe"] == "ref"
    model = build_model("resnet8", 4)
    model.load_state_dict(ours["model"], strict=True)
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(_logits(model.eval()(x)), _logits(reference(x)))
    metrics = json.loads((tdir / "metrics.json").read_text())
    assert metrics["imported_from"]["md5"] == file_md5(work / REF_PATH)
    assert metrics["imported_from"]["stored_accuracy"] == {"key": "best_acc", "value": 71.25}
    assert 0 <= metrics["checkpoints"]["240"]["test_acc"] <= 100
    for method in ("kd", "fitnet"):
        [path] = work.glob(f"results/students/synthetic-*/resnet8-ref-s0-*/ep240/{method}-*/resnet8/seed0/metrics.json")
        student = json.loads(path.read_text())
        assert student["teacher"]["recipe"] == "ref" and student["teacher"]["epoch"] == 240
    summary = json.loads((work / "results/studies/tiny/tables/summary.json").read_text())
    assert set(summary["recipes"]) == {"standard", "ref"}  # each recipe at its own last checkpoint
    assert dry_run_jobs(work) == {}


@pytest.mark.slow
def test_every_run_links_to_its_files_and_logs_small_artifacts(served_study, tmp_path):
    from mlflow.tracking import MlflowClient

    work, uri, _ = served_study
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    roles = sorted((r.data.tags["role"], r.data.tags.get("imported", "false")) for r in runs)
    assert roles == [("student", "false")] * 4 + [("teacher", "false"), ("teacher", "true")]
    ids = {r.info.run_id for r in runs}
    for r in runs:
        tags = r.data.tags
        assert r.info.status == "FINISHED"
        assert len(tags["git_commit"]) in (40, 7) or tags["git_commit"] == "unknown"
        files = {k[:-len(".path")] for k in tags if k.endswith(".path") and not k.startswith("source")}
        expected = {"teacher_checkpoint", "model"} if tags["role"] == "student" else {
            f"checkpoint.ep{240 if tags.get('imported') == 'true' else 2}"}
        assert files == expected, tags
        for label in files:  # path + md5 lead back to the exact file (the md5 is its name in DVC's cache)
            assert file_md5(work / tags[f"{label}.path"]) == tags[f"{label}.md5"]
            # the shared file reaches DVC as the study's link of it (dvc.yaml's outputs per study)
            assert tags[f"{label}.dvc_out"] in ("results/studies/tiny/teachers", "results/studies/tiny/students")
        artifacts = {a.path: a.file_size for a in client.list_artifacts(r.info.run_id)}
        assert set(artifacts) == {"metrics.json", "spec.json"}
        assert max(artifacts.values()) < 200_000  # no checkpoint copied into MLflow
        local = Path(client.download_artifacts(r.info.run_id, "spec.json", str(tmp_path)))
        spec = json.loads(local.read_text())
        assert spec["identity"] == tags["identity"]
        local = Path(client.download_artifacts(r.info.run_id, "metrics.json", str(tmp_path)))
        metrics = json.loads(local.read_text())
        assert metrics["mlflow_run_id"] == r.info.run_id
        if tags["role"] == "student":
            assert tags["mlflow.parentRunId"] in ids
            assert tags["teacher_checkpoint.md5"] == client.get_run(tags["mlflow.parentRunId"]).data.tags[
                f"checkpoint.ep{tags['epoch']}.md5"]
        if tags.get("imported") == "true":
            assert tags["source.md5"] == file_md5(work / REF_PATH)
            assert "test_acc" in r.data.metrics


# --- slow: DVC remote round trip and a DVC experiment ---------------------------------------------------------


@pytest.mark.slow
def test_dvc_push_clone_pull_then_nothing_to_do_and_kd_change_reruns_students(tmp_path):
    src, remote, clone = tmp_path / "src", tmp_path / "remote", tmp_path / "clone"
    src.mkdir()
    work = copy_workflow(src)
    shutil.copytree(REPO / "pipeline_src", work / "pipeline_src", ignore=shutil.ignore_patterns("__pycache__"))
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["teacher"].update(checkpoint_every=2, recipes={"soteacher": cfg["teacher"]["recipes"]["soteacher"]})
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(REPO / ".gitignore", work / ".gitignore")  # the shared results stay out of git: DVC holds them
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["dvc", "remote", "add", "-d", "store", str(remote)], work)
    run(["dvc", "repro"], work)
    run(["dvc", "push"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-q", "-m", "tiny study"], work)

    # the student runs link to the teacher checkpoint inside the study's DVC-tracked teachers of dvc.lock
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/mlflow/mlflow.db")
    students = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.role = 'student'")
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    teachers_md5 = next(o["md5"] for o in lock["stages"]["teachers@tiny"]["outs"]
                        if o["path"] == "results/studies/tiny/teachers")
    for r in students:
        assert r.data.tags["teacher_checkpoint.dvc_out_md5"] == teachers_md5
        md5 = r.data.tags["teacher_checkpoint.md5"]
        assert (remote / "files/md5" / md5[:2] / md5[2:]).is_file()  # the exact file, in the remote

    run(["git", "clone", "-q", str(work), str(clone)], tmp_path)
    assert not (clone / "results/teachers").exists()
    run(["dvc", "pull"], clone)
    # what `make pull` runs after `dvc pull`: the shared folders back from the study's links, then the touch
    run(["python", "-m", "soteacher", "link-study", "--restore"], clone)
    [checkpoint] = work.glob("results/teachers/synthetic-*/resnet8-soteacher-s0-*/ep2.pt")
    for path in (checkpoint.relative_to(work), "results/studies/tiny/tables/summary.json"):
        assert (clone / path).read_bytes() == (work / path).read_bytes()
    run(["snakemake", "all", "--touch", "--forceall", "--cores", "1", "--quiet"], clone)
    assert dry_run_jobs(clone) == {}
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone).stdout

    cfg_path = clone / "config/config.yaml"
    edited = yaml.safe_load(cfg_path.read_text())
    edited["distill"]["methods"]["kd"]["kd_temperature"] = 2.0
    cfg_path.write_text(yaml.safe_dump(edited))
    assert dry_run_jobs(clone) == {"distill": 1, "aggregate": 1, "all": 1}
    run(["git", "checkout", "--", "config/config.yaml"], clone)

    # an ablation as a DVC experiment (nested key in the params file), its metric in `dvc exp show`
    run(["dvc", "exp", "run", "-S", "config/config.yaml:teacher.recipes.soteacher.consistency.weight=2.0"], clone)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], clone).stdout)
    text = json.dumps(shown)
    assert "student_last_acc" in text and "consistency" in text
    assert yaml.safe_load(cfg_path.read_text())["teacher"]["recipes"]["soteacher"]["consistency"]["weight"] == 2.0
