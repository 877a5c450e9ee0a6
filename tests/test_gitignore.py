"""The repository's .gitignore: a study's generated files stay out of `git status`, except the small outputs DVC
expects git to hold (dvc.yaml's `cache: false` outs), and DVC keeps working in a real git + DVC repository."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, copy_workflow, run

GENERATED = ("results/", "logs/", "mlflow/", ".snakemake/", "report.html")


def _outs(work: Path = REPO) -> tuple[set[str], set[str]]:
    """(dvc.yaml's cached outputs, its outputs and metrics git holds: `cache: false`), for each study params.yaml
    lists (the stages are `foreach` templates over them)."""
    cached, in_git = set(), set()
    studies = yaml.safe_load((work / "params.yaml").read_text())["studies"]
    for stage in yaml.safe_load((work / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics"):
            for out in stage["do"].get(kind, []):
                path, opts = next(iter(out.items())) if isinstance(out, dict) else (out, {})
                for study in studies:
                    (in_git if opts.get("cache", True) is False else cached).add(path.replace("${key}", study))
    return cached, in_git


def _is_folder(out: str) -> bool:
    return not Path(out).suffix  # dvc.yaml's outs are folders (a study's tables) or files with a suffix


def _held_by(files: list[str], outs: set[str]) -> bool:
    """Every file lies in (or is) one of ``outs``, and every one of ``outs`` holds some of the files."""
    def inside(f: str, out: str) -> bool:
        return f == out or f.startswith(out + "/")

    return bool(files) and all(any(inside(f, o) for o in outs) for f in files) and all(
        any(inside(f, o) for f in files) for o in outs)


def _ignored(repo: Path, paths: list[str]) -> set[str]:
    out = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=repo, input="\n".join(paths),
                         capture_output=True, text=True, check=False)
    assert out.returncode in (0, 1), out.stderr  # 1: none ignored
    return set(out.stdout.split())


def _untracked(repo: Path) -> list[str]:
    out = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout.splitlines()
    return sorted(line[3:] for line in out)


def test_gitignore_ignores_every_cached_dvc_out_and_none_that_git_holds(tmp_path):
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    run(["git", "init", "-q"], tmp_path)
    cached, in_git = _outs()
    assert cached and in_git
    # a cached out folder's files (a study's teachers/...) and cached files; never what git must hold for DVC
    probes = [f"{p}/some/file.pt" for p in cached] + sorted(cached)
    assert _ignored(tmp_path, probes) == set(probes)
    # an uncached out folder (a study's tables) holds files git tracks
    keep = [f"{p}/new.csv" if _is_folder(p) else p for p in sorted(in_git)] + [
        "results/.gitignore", "results/figures/.gitignore", "results/extra.txt.dvc"]
    assert _ignored(tmp_path, keep) == set()
    assert _ignored(tmp_path, ["logs/x.log", "mlflow/mlflow.db", "report.html", "results/extra.csv"]) == {
        "logs/x.log", "mlflow/mlflow.db", "report.html", "results/extra.csv"}


@pytest.mark.slow
def test_after_a_run_git_status_lists_only_what_git_holds_and_dvc_still_works(tmp_path):
    work = copy_workflow(tmp_path)
    shutil.copy(REPO / ".gitignore", work / ".gitignore")
    shutil.copytree(REPO / "pipeline_src", work / "pipeline_src", ignore=shutil.ignore_patterns("__pycache__"))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "workflow"], work)
    _, in_git = _outs(work)

    run(["snakemake", "--cores", "2"], work)  # what `make run` runs: the study, then its links and DVC record
    run(["python", "-m", "soteacher", "link-study", "--config", "config/config.yaml", "--teachers", "--students",
         "--dvc-commit"], work)
    assert (work / "results/teachers").is_dir() and (work / "mlflow/mlflow.db").is_file()
    untracked = _untracked(work)
    assert "dvc.lock" in untracked
    assert _held_by([p for p in untracked if p.startswith("results/") and not p.endswith("/.gitignore")], in_git)

    # DVC's record is current: its stages have nothing to do; no complaint about ignored outputs
    assert "Data and pipelines are up to date" in run(["dvc", "status"], work).stdout
    repro = run(["dvc", "repro"], work)
    text = repro.stdout + repro.stderr
    assert "Running stage" not in text, text
    assert "ERROR" not in text and "WARNING" not in text and "ignored" not in text.lower(), text
    untracked = _untracked(work)
    assert "dvc.lock" in untracked
    assert _held_by([p for p in untracked if p.startswith("results/") and not p.endswith("/.gitignore")], in_git)
    assert not [p for p in untracked if p.startswith(GENERATED) and p != "dvc.lock" and not p.endswith("/.gitignore")
                and not any(p == o or p.startswith(o + "/") for o in in_git)]
    # docs/share.md's commit after a study: the small tables go in, no checkpoint or cached table does
    run(["git", "add", "dvc.lock", "results"], work)
    run(["git", "commit", "-qm", "results"], work)
    committed = run(["git", "ls-files", "results"], work).stdout.split()
    assert _held_by([p for p in committed if not p.endswith("/.gitignore")], in_git)
    assert _untracked(work) == []

    # `dvc add` of a file under results/ works and its .dvc file is not ignored
    (work / "results/extra.txt").write_text("notes\n")
    run(["dvc", "add", "results/extra.txt"], work)
    assert "results/extra.txt.dvc" in _untracked(work) and "results/extra.txt" not in _untracked(work)
    assert "Running stage" not in run(["dvc", "repro"], work).stdout

    # a DVC experiment commits the metrics it produced (they would be missing were summary.json ignored)
    run(["git", "add", "results"], work)
    run(["git", "commit", "-qm", "extra"], work)
    run(["dvc", "exp", "run", "-n", "two-epochs", "-S", "config/config.yaml:distill.epochs=2"], work)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], work).stdout)
    exps = [e for rev in shown for e in rev.get("experiments") or []]
    (exp,) = [e for e in exps if e.get("name") == "two-epochs"]
    metrics = exp["revs"][0]["data"]["metrics"]["results/studies/tiny/summary.json"]["data"]
    assert metrics["recipes"]["standard"]["student_last_acc"] is not None
