"""A study's own copy of the shared results it used, so DVC can track each study (``dvc.yaml``'s stages per study).

Data sets, teachers and students are stored once, by content, and shared by every study that needs them
(``common.layout``). DVC cannot list one folder as an output of two stages, so each study's stages track hard links
of what it used: ``results/studies/<name>/teachers/`` (its data sets and teachers, paths as under ``results/``) and
``results/studies/<name>/students/``. Hard links cost no space, and DVC's cache (``cache.type hardlink``) keeps one
object per file. ``restore`` re-creates the shared folders from any study's links (after a ``dvc pull`` in a fresh
clone), so Snakemake finds what was trained and trains nothing again.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from soteacher.core import layout
from soteacher.core.errors import ConfigError
from soteacher.study.identity import data_id

log = logging.getLogger(__name__)


def used(config: dict, part: str) -> list[Path]:
    """The shared folders a study uses: its data set and teachers (``teachers``), or its student runs."""
    if part == "teachers":
        from soteacher.study.teacher_jobs import teacher_jobs

        return [layout.data_dir(data_id(config))] + [layout.teacher_dir(t) for t in
                                                                      teacher_jobs(config)]
    from soteacher.study.student_jobs import student_outputs

    return sorted({Path(metrics).parent for metrics in student_outputs(config)})


def _link_tree(src: Path, dst: Path) -> int:
    """Hard-link every file of ``src`` into ``dst`` (a copy where the file system refuses links); job state under
    ``.resume`` is left out. Returns the number of files."""
    n = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or layout.RESUME_DIR in rel.parts:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        n += 1
    return n


def link(config: dict, part: str) -> Path:
    """Replace the study's ``part`` folder with links to what it uses now; for ``students`` also its metrics file
    (``summary.json`` beside the tables: DVC allows no metrics file inside an output folder)."""
    study = config["name"]
    mirror = layout.study_part_dir(study, part)
    shutil.rmtree(mirror, ignore_errors=True)
    sources = used(config, part)
    missing = [src for src in sources if not src.is_dir()]
    if missing:
        raise ConfigError(f"study {study!r} has not produced {missing[0]} yet ({len(missing)} missing): run "
                          "`make run` (or snakemake) for it first")
    files = sum(_link_tree(src, mirror / src.relative_to(layout.RESULTS)) for src in sources)
    if part == "students":
        shutil.copy2(layout.tables_dir(study) / "summary.json", layout.study_metrics(study))
    log.info("linked %d files of study %s into %s", files, study, mirror)
    return mirror


def restore(root: Path = Path(".")) -> int:
    """Re-create missing shared files from any study's links; returns how many were restored."""
    n = 0
    for part in layout.STUDY_PARTS:
        for mirror in sorted((root / layout.RESULTS / "studies").glob(f"*/{part}")):
            for path in sorted(mirror.rglob("*")):
                target = root / layout.RESULTS / path.relative_to(mirror)
                if path.is_file() and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, target)
                    n += 1
    if n:
        log.info("restored %d shared result files from the studies' links", n)
    return n


def dvc_record(config: dict, config_path: str) -> bool:
    """After a run outside DVC (``make run``): record the study's DVC stages as done (``dvc commit -f``), so that
    ``dvc status`` is clean and ``dvc repro`` does nothing. Only for a study that ``params.yaml`` lists with this
    config file, in a DVC repository; otherwise says why not and returns False."""
    import yaml

    study = config["name"]
    params = Path("params.yaml")
    listed = (yaml.safe_load(params.read_text()) or {}).get("studies", {}) if params.is_file() else {}
    if not Path(".dvc").is_dir() or listed.get(study, {}).get("config") != config_path:
        log.info("study %s is not one of params.yaml's DVC studies with %s: DVC's record left as it is", study,
                 config_path)
        return False
    stages = [f"{part}@{study}" for part in layout.STUDY_PARTS]
    out = subprocess.run(["dvc", "commit", "-f", "-q", *stages], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`dvc commit -f {' '.join(stages)}` failed: {out.stderr.strip()[-2000:]}")
    log.info("recorded %s in dvc.lock", ", ".join(stages))
    return True
