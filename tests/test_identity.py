"""Result identities (``study.identity``): what a folder's hash covers, that a setting added with a default renames
nothing, and ``rekey``'s names of results format 1 (``tests/data/format1_names.json``: the folders the release
before identities, commit 82c8897, gave the tiny, default (tests/configs/default_format1.yaml), theory and ablation
studies)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

from soteacher.core import layout
from soteacher.study import config as config_mod
from soteacher.study import identity, rekey, student_jobs, teacher_jobs
from tests.helpers import REPO, TINY_CONFIG, dry_run_jobs, run

FORMAT1 = json.loads((REPO / "tests" / "data" / "format1_names.json").read_text())


def folders(config: dict) -> dict:
    """Every result folder a study names: its data set, teachers and students."""
    return {"data": str(layout.data_dir(identity.data_id(config))),
            "teachers": sorted(str(layout.teacher_dir(t)) for t in teacher_jobs.teacher_jobs(config)),
            "students": sorted({str(Path(student_jobs.student_metrics(j)).parent)
                                for j in student_jobs.student_jobs(config)})}


def tiny(**sections) -> dict:
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["distill"]["methods"]["vanilla"] = {}
    for dotted, value in sections.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config_mod.validate(raw, deep=False)


def test_non_default_keeps_what_differs_key_by_key():
    default = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None}
    assert identity.non_default({"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None}, default) is identity._SAME
    assert identity.non_default({"a": 1, "b": {"c": 3, "d": [1, 2]}, "e": None}, default) == {"b": {"c": 3}}
    assert identity.non_default({"a": 1.0, "b": {"c": 2, "d": [2, 1]}, "e": 0}, default) == {"b": {"d": [2, 1]},
                                                                                               "e": 0}
    assert identity.non_default({"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None, "new": 5}, default) == {"new": 5}


def test_a_default_given_explicitly_and_a_number_written_as_int_name_the_same_results():
    assert folders(tiny(**{"teacher.optim.lr": 0.05, "distill.optim.momentum": 0.9, "data.val_size": 0,
                           "distill.methods.fitnet": {"weight": 100}})) == folders(tiny())


def test_a_changed_setting_renames_exactly_what_it_determines():
    base = folders(tiny())
    students = folders(tiny(**{"distill.epochs": 3}))
    assert students["data"] == base["data"] and students["teachers"] == base["teachers"]
    assert not set(students["students"]) & set(base["students"])
    teachers = folders(tiny(**{"teacher.optim.lr": 0.1}))
    assert teachers["data"] == base["data"] and not set(teachers["teachers"]) & set(base["teachers"])
    kd = folders(tiny(**{"distill.methods.kd": {"kd_temperature": 2.0}}))
    assert [s for s in kd["students"] if s not in base["students"]] == [s for s in kd["students"] if "/kd-" in s]
    data = folders(tiny(**{"data.val_size": 8}))
    assert data["data"] != base["data"] and not set(data["teachers"]) & set(base["teachers"])


def _schema_with_added_defaults(tmp_path: Path, typed_sections: bool = True) -> Path:
    """A copy of the schema with one more defaulted key under data, under a KD method and under every teacher term;
    ``typed_sections``: under compute and optim too (whose typed settings, ``core.settings``, refuse a key no code
    reads: a job spec cannot be built with them)."""
    schema = yaml.safe_load(config_mod.SCHEMA_PATH.read_text())
    added = {"type": "number", "default": 1.5, "description": "a setting a later release adds"}
    schema["properties"]["data"]["properties"]["added_knob"] = added
    schema["properties"]["data"]["properties"]["synthetic"]["properties"]["added_knob"] = added
    schema["properties"]["distill"]["properties"]["methods"]["properties"]["kd"]["properties"]["added_knob"] = added
    if typed_sections:
        schema["properties"]["compute"]["properties"]["added_knob"] = added
        schema["definitions"]["optim"]["properties"]["added_knob"] = added
    terms = schema["properties"]["teacher"]["properties"]["recipes"]["additionalProperties"]["properties"]
    for term in terms.values():
        term.setdefault("properties", {})["added_knob"] = added
    path = tmp_path / "config.schema.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    return path


@pytest.fixture
def schema_copy(tmp_path, monkeypatch):
    path = _schema_with_added_defaults(tmp_path)
    monkeypatch.setattr(config_mod, "SCHEMA_PATH", path)
    config_mod._schema.cache_clear()
    config_mod.defaults_at.cache_clear()
    yield path
    config_mod._schema.cache_clear()
    config_mod.defaults_at.cache_clear()


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/theory.yaml"])
def test_settings_added_with_defaults_rename_no_result(config_file, tmp_path, monkeypatch):
    before = folders(config_mod.load(REPO / config_file, deep=False))
    path = _schema_with_added_defaults(tmp_path)
    monkeypatch.setattr(config_mod, "SCHEMA_PATH", path)
    config_mod._schema.cache_clear()
    config_mod.defaults_at.cache_clear()
    try:
        cfg = config_mod.load(REPO / config_file, deep=False)
        assert cfg["data"]["added_knob"] == 1.5 and cfg["distill"]["methods"]["kd"]["added_knob"] == 1.5
        assert all(p.get("added_knob") == 1.5 for r in cfg["teacher"]["recipes"].values() for p in r.values())
        assert folders(cfg) == before
    finally:
        config_mod._schema.cache_clear()
        config_mod.defaults_at.cache_clear()


@pytest.mark.parametrize("study", sorted(FORMAT1))
def test_rekey_knows_the_names_results_format_1_gave(study):
    if study.startswith("tests/configs/tiny.yaml"):
        cfg = tiny()
    else:
        cfg = config_mod.load(REPO / study, deep=False)
    old = {str(m.old) for m in rekey.moves(cfg)}
    expected = FORMAT1[study]
    assert old == {expected["data"], *expected["teachers"], *expected["students"]}
    new = {str(m.new) for m in rekey.moves(cfg)}
    now = folders(cfg)
    assert new == {now["data"], *now["teachers"], *now["students"]}


def test_rekey_moves_each_result_once_and_a_second_run_moves_nothing(tmp_path):
    cfg = copy.deepcopy(tiny())
    cfg["tracking"]["uri"] = f"sqlite:///{tmp_path}/none/mlflow.db"  # no store: nothing to retag
    for move in rekey.moves(cfg):
        (tmp_path / move.old).mkdir(parents=True, exist_ok=True)
        (tmp_path / move.old / "result.txt").write_text(str(move.old))
    counts = rekey.rekey(cfg, root=tmp_path)
    assert counts == {"moved": 12, "already": 0, "not found": 0, "both exist": 0}
    for move in rekey.moves(cfg):
        assert (tmp_path / move.new / "result.txt").read_text() == str(move.old)
        assert not (tmp_path / move.old).exists()
    assert rekey.rekey(cfg, root=tmp_path)["moved"] == 0
    assert not (tmp_path / FORMAT1["tests/configs/tiny.yaml + vanilla"]["data"]).exists()


def _dry_run_outputs(work: Path, **env) -> set[str]:
    """Every output file ``snakemake -n --forceall`` would make (the study's whole DAG)."""
    out = run(["snakemake", "-n", "--forceall", "--cores", "1"], work, **env)
    return {name for line in out.stdout.splitlines() if line.strip().startswith("output:")
            for name in line.split(":", 1)[1].strip().split(", ")}


@pytest.mark.slow
def test_snakemake_plans_the_same_outputs_with_settings_added_to_the_schema(work, tmp_path):
    before = _dry_run_outputs(work)
    after = _dry_run_outputs(work, SOTEACHER_SCHEMA=str(_schema_with_added_defaults(tmp_path, typed_sections=False)))
    assert after == before
    assert any("/teachers/" in o for o in before) and any("/students/" in o for o in before)


@pytest.mark.slow
def test_rekey_of_a_study_left_by_the_release_before_leaves_snakemake_nothing_to_do(work):
    """The tiny study trained, then put back under its format-1 names (folders, MLflow tags) as the release before
    left it; ``rekey`` moves it, retags its runs and re-links it, and Snakemake has nothing to do."""
    from mlflow.tracking import MlflowClient

    run(["snakemake", "--cores", "2"], work)
    run([sys.executable, "-m", "soteacher", "link-study", "--config", "config/config.yaml", "--teachers",
         "--students"], work)
    cfg = config_mod.load(work / "config/config.yaml", deep=False)
    moves = rekey.moves(cfg)
    client = MlflowClient(f"sqlite:///{work}/mlflow/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=100)
    for r in runs:  # the tags format 1 wrote
        client.set_tag(r.info.run_id, "config_hash", "0" * 12)
        client.delete_tag(r.info.run_id, "identity")
        for key, value in r.data.tags.items():
            for move in moves:
                if key.endswith(".path") and value.startswith(move.new.as_posix() + "/"):
                    client.set_tag(r.info.run_id, key, move.old.as_posix() + value[len(move.new.as_posix()):])
    for move in moves:
        (work / move.old).parent.mkdir(parents=True, exist_ok=True)
        (work / move.new).rename(work / move.old)
    results = [*student_jobs.student_outputs(cfg), *teacher_jobs.teacher_outputs(cfg)]
    assert not any((work / f).is_file() for f in results)  # the study's results under their old names only

    out = run([sys.executable, "-m", "soteacher", "rekey", "config/config.yaml"], work)
    assert f"{len(moves)} moved, 0 already, 0 not found" in out.stdout
    assert all((work / f).is_file() for f in results)
    assert dry_run_jobs(work) == {}
    for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=100):
        assert "config_hash" not in r.data.tags and len(r.data.tags["identity"]) == 8
        paths = [v for k, v in r.data.tags.items() if k.endswith(".path")]
        assert paths and all((work / p).is_file() for p in paths)
    linked = {p.relative_to(work / layout.study_part_dir("tiny", "teachers")).as_posix()
              for p in (work / layout.study_part_dir("tiny", "teachers")).rglob("*.pt")}
    assert linked == {p.relative_to(work / "results").as_posix() for part in ("data", "teachers")
                      for p in (work / "results" / part).rglob("*.pt")}
    assert "0 moved" in run([sys.executable, "-m", "soteacher", "rekey", "config/config.yaml"], work).stdout
