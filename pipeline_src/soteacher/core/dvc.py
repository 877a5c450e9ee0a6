"""What DVC records about a file: the study output (``dvc.yaml``) that tracks it and, once ``dvc.lock`` holds that
output with this very file in it, the output's directory hash. MLflow runs carry both as tags (``tracking.log_links``)
so a run leads to the exact bytes in the DVC cache or a remote. Read from the files DVC writes; DVC is not imported."""

from __future__ import annotations

from pathlib import Path

from soteacher.core import layout


def dvc_links(path: Path, md5: str, study: str, root: Path | None = None) -> dict[str, str]:
    """Which DVC-tracked output of study ``study`` holds ``path``, and, when the current ``dvc.lock`` already records
    that output with this very file in it (an input produced by an earlier stage, e.g. a teacher checkpoint seen
    from a distill job), the output's directory hash from the lock. A shared result (``results/teachers/...``)
    reaches DVC as the study's link of it (``results/studies/<study>/teachers/teachers/...``; study_links)."""
    import json

    import yaml

    root = Path.cwd() if root is None else root
    try:
        rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return {}
    rel = layout.link_of(study, rel)
    links: dict[str, str] = {}
    for name in ("dvc.lock", "dvc.yaml"):
        if not (root / name).is_file():
            continue
        try:
            stages = (yaml.safe_load((root / name).read_text()) or {}).get("stages", {})
        except yaml.YAMLError:
            continue
        for stage in stages.values():
            stage = stage.get("do", stage) if isinstance(stage, dict) else {}  # a foreach stage: its template
            for out in stage.get("outs", []):
                out_path = out.get("path") if isinstance(out, dict) and "path" in out else (
                    next(iter(out)) if isinstance(out, dict) else out)
                out_path = out_path.replace("${key}", study) if isinstance(out_path, str) else out_path
                if not isinstance(out_path, str) or not rel.startswith(out_path.rstrip("/") + "/"):
                    continue
                links["dvc_out"] = out_path
                dir_md5 = out.get("md5", "") if name == "dvc.lock" and isinstance(out, dict) else ""
                manifest = root / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
                if dir_md5.endswith(".dir") and manifest.is_file():
                    inner = rel[len(out_path.rstrip("/")) + 1:]
                    entries = json.loads(manifest.read_text())
                    if any(e.get("relpath") == inner and e.get("md5") == md5 for e in entries):
                        links["dvc_out_md5"] = dir_md5
        if links:
            return links
    return links
