"""Reproducing the paper: distill.pairs, the presets in config/paper/, the planner, the paper tables and figures.

Fast tests build tables from hand-written metrics files; the slow ones run shrunken Fig. 1 / Fig. 2 presets
through Snakemake and build the HTML report.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from soteacher.common import config as config_mod
from soteacher.common import layout
from soteacher.student_side import aggregate, jobs, plan
from soteacher.teacher_side import jobs as teacher_jobs
from tests.helpers import REPO, TINY_CONFIG, copy_workflow

PRESETS = sorted((REPO / "config" / "paper").glob("*.yaml"))


def _tiny(**changes) -> dict:
    raw = config_mod.read_yaml(TINY_CONFIG)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


# ---- distill.pairs -----------------------------------------------------------------------------------------

def test_pairs_replace_the_product():
    raw = _tiny(**{"teacher.archs": ["resnet8", "resnet14"], "distill.students": ["resnet8", "wrn_16_1"]})
    product = config_mod.validate(raw)
    assert {(g["teacher_arch"], g["student"]) for g in jobs.student_groups(product)} == {
        ("resnet8", "resnet8"), ("resnet8", "wrn_16_1"), ("resnet14", "resnet8"), ("resnet14", "wrn_16_1")}
    raw["distill"]["pairs"] = [["resnet8", "wrn_16_1"], ["resnet14", "resnet8"]]
    paired = config_mod.validate(raw)
    groups = jobs.student_groups(paired)
    assert {(g["teacher_arch"], g["student"]) for g in groups} == {("resnet8", "wrn_16_1"), ("resnet14", "resnet8")}
    # 2 pairs x 2 recipes x 2 checkpoints x 1 seed, each with both methods
    assert len(groups) == 8 and len(jobs.student_jobs(paired)) == 16
    assert len(teacher_jobs.teacher_jobs(paired)) == 4


def test_pairs_students_need_not_be_in_students_list():
    raw = _tiny(**{"distill.pairs": [["resnet8", "wrn_16_1"]], "distill.students": ["resnet8"]})
    cfg = config_mod.validate(raw)
    assert {g["student"] for g in jobs.student_groups(cfg)} == {"wrn_16_1"}


@pytest.mark.parametrize("pairs, message", [
    ([["resnet20", "resnet8"]], "distill.pairs[0][0]: teacher 'resnet20' is not in teacher.archs"),
    ([["resnet8", "resnet9"]], "distill.pairs[0][1]: unknown architecture 'resnet9'"),
    ([["resnet8", "resnet8"], ["resnet8", "resnet8"]], "a teacher -> student pair is listed twice"),
    ([["resnet8"]], "distill.pairs[0]"),
])
def test_bad_pairs_are_named(pairs, message):
    with pytest.raises(config_mod.ConfigError, match=re.escape(message)):
        config_mod.validate(_tiny(**{"distill.pairs": pairs}))


def test_teacher_in_no_pair_is_an_error():
    raw = _tiny(**{"teacher.archs": ["resnet8", "resnet14"], "distill.pairs": [["resnet8", "resnet8"]]})
    with pytest.raises(config_mod.ConfigError, match="resnet14 appear in no distill.pairs entry"):
        config_mod.validate(raw)


def test_deep_check_covers_only_the_pairs():
    # fsp needs equal channel counts: resnet8 -> resnet8 works, resnet8 -> wrn_16_2 does not
    raw = _tiny(**{"distill.methods": {"fsp": {}}, "distill.students": ["wrn_16_2"],
                   "distill.pairs": [["resnet8", "resnet8"]]})
    config_mod.validate(raw)
    raw["distill"]["pairs"] = [["resnet8", "wrn_16_2"]]
    with pytest.raises(config_mod.ConfigError, match="fsp: cannot distil resnet8 -> wrn_16_2"):
        config_mod.validate(raw)


# ---- presets and the planner --------------------------------------------------------------------------------

def test_presets_exist():
    names = {p.stem for p in PRESETS}
    assert {"cifar100_table", "fig1_checkpoints", "fig2_ablation", "tiny_imagenet", "imagenet"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_passes_check_config_and_states_its_plan(path):
    cfg = config_mod.load(path)  # deep: every method on every pair
    result = plan.make_plan(cfg)
    assert result.jobs["train_teacher"] == len(teacher_jobs.teacher_jobs(cfg))
    assert result.jobs["distill"] == len(jobs.student_groups(cfg))  # group_methods
    assert result.device_hours["total"] > 0
    header = path.read_text().splitlines()[0]
    assert header == plan.header_comment(result), f"{path.name}: refresh its first line with `plan --header`"


def test_cifar100_table_preset_has_the_papers_pairs_and_every_method():
    from soteacher.student_side.methods import METHODS

    table = config_mod.load(REPO / "config/paper/cifar100_table.yaml", deep=False)
    fsp = config_mod.load(REPO / "config/paper/cifar100_table_fsp.yaml", deep=False)
    assert set(map(tuple, table["distill"]["pairs"])) == {
        ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet32x4", "resnet8x4"),
        ("vgg13", "vgg8"), ("resnet32x4", "ShuffleNetV2"), ("wrn_40_2", "ShuffleNetV1"), ("vgg13", "MobileNetV2")}
    assert set(table["distill"]["methods"]) | set(fsp["distill"]["methods"]) == set(METHODS)
    assert table["teacher"]["epochs"] == 240 and table["teacher"]["optim"]["lr_milestones"] == [150, 180, 210]
    assert set(table["teacher"]["recipes"]) == {"standard", "soteacher"}
    assert len(table["teacher"]["seeds"]) * len(table["distill"]["seeds"]) == 3


def test_fig2_preset_varies_one_hyperparameter_at_a_time():
    cfg = config_mod.load(REPO / "config/paper/fig2_ablation.yaml", deep=False)
    points = pd.DataFrame(aggregate.ablation_points(cfg["teacher"]["recipes"]))
    assert set(points["parameter"]) == {"lambda_lr", "lambda_cr", "cr_schedule"}
    # every recipe but standard is on some axis; the default is on all three
    assert set(points["recipe"]) == set(cfg["teacher"]["recipes"]) - {"standard"}
    assert points[points["is_default"]]["recipe"].eq("soteacher").all() and points["is_default"].sum() == 3


def test_plan_counts_and_warnings():
    cfg = config_mod.validate(_tiny())
    result = plan.make_plan(cfg)
    assert result.jobs == {"prepare_data": 1, "train_teacher": 2, "distill": 4, "aggregate": 1}
    assert not result.warnings
    cfg = config_mod.validate(_tiny(**{"distill.group_methods": False}))
    assert plan.make_plan(cfg).jobs["distill"] == 8
    huge = config_mod.validate(_tiny(**{"distill.seeds": list(range(300))}), deep=False)
    assert any("huge study" in w and "jobs" in w for w in plan.make_plan(huge).warnings)
    big = config_mod.load(REPO / "config/paper/cifar100_table.yaml", deep=False)
    assert any("GPU" in w for w in plan.make_plan(big).warnings)


def test_plan_scales_with_data_and_epochs():
    small = plan.make_plan(config_mod.validate(_tiny()))
    longer = plan.make_plan(config_mod.validate(_tiny(**{"teacher.epochs": 4, "teacher.checkpoint_every": 2})))
    assert longer.cpu_hours["train_teacher"] > small.cpu_hours["train_teacher"]


def test_plan_cli_and_measure(tmp_path):
    out = subprocess.run([sys.executable, "-m", "soteacher", "plan", str(TINY_CONFIG), "--measure", "--steps", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    for rule in ("prepare_data", "train_teacher", "distill", "aggregate"):
        assert re.search(rf"^\s+{rule}\s+\d+$", out.stdout, re.M), out.stdout
    assert "cpu (measured here" in out.stdout


def test_every_zoo_architecture_has_a_cost():
    from soteacher.teacher_side.models import MODELS

    assert set(plan.CPU_COSTS) == set(MODELS)


# ---- tables and figures from hand-written metrics -------------------------------------------------------------

def _write_results(root: Path, cfg: dict, student_acc, teacher_acc=lambda job: 80.0) -> None:
    for job in teacher_jobs.teacher_jobs(cfg):
        epochs = config_mod.checkpoint_epochs(cfg["teacher"])
        path = root / layout.teacher_metrics(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"checkpoints": {str(e): {"test_acc": teacher_acc(job) + e + job["teacher_seed"],
                                                             "tv_pstar_train": 0.3} for e in epochs}}))
    for job in jobs.student_jobs(cfg):
        path = root / jobs.student_metrics(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        acc = student_acc(job)
        path.write_text(json.dumps({"last_acc": acc, "best_acc": acc + 1.0}))


def test_tables_deltas_and_ablation_from_known_numbers(tmp_path, monkeypatch):
    recipes = {"standard": {}, "soteacher": {"lambda_lr": 1e-5, "lambda_cr": 1.0},
               "lr_big": {"lambda_lr": 1e-3, "lambda_cr": 1.0}, "cr_half": {"lambda_lr": 1e-5, "lambda_cr": 0.5},
               "cosine": {"lambda_lr": 1e-5, "lambda_cr": 1.0, "cr_schedule": "cosine"},
               "both": {"lambda_lr": 0.0, "lambda_cr": 2.0}}  # two changes: no ablation point
    cfg = config_mod.validate(_tiny(**{"teacher.recipes": recipes, "teacher.seeds": [0, 1],
                                       "distill.seeds": [0, 1]}), deep=False)
    gain = {"standard": 0.0, "soteacher": 1.0, "lr_big": -2.0, "cr_half": 0.5, "cosine": 0.25, "both": 0.0}
    _write_results(tmp_path, cfg, lambda job: 50.0 + gain[job["recipe"]] + job["seed"] + (job["method"] == "kd"))
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)
    assert {p.name for p in outputs.values()} == {Path(p).name for p in _aggregate_rule_outputs()}

    table = pd.read_csv(outputs["csv"])
    row = table[(table["recipe"] == "soteacher") & (table["method"] == "kd") & (table["teacher_epoch"] == 2)].iloc[0]
    assert row["student_last_mean"] == pytest.approx(52.5) and row["n"] == 4
    # every (teacher seed, student seed) pair differs by the recipe's gain: a zero-width interval above 0
    assert row["delta_last_mean"] == pytest.approx(1.0) and row["delta_best_mean"] == pytest.approx(1.0)
    assert row["delta_last_n"] == 4 and row["delta_last_low"] == pytest.approx(1.0)
    assert row["delta_last_verdict"] == "better"
    assert row["teacher_acc"] == pytest.approx(82.5) and row["teacher_acc_std"] == pytest.approx(0.7071, abs=1e-3)
    assert row["n_teachers"] == 2
    assert table[table["recipe"] == "standard"]["delta_last_mean"].isna().all()

    delta = pd.read_csv(outputs["delta_csv"])
    assert set(delta["recipe"]) == set(recipes) - {"standard"}
    assert (delta[delta["recipe"] == "lr_big"]["sign_last"] == "-").all()
    assert (delta[delta["recipe"] == "soteacher"]["sign_last"] == "+").all()
    bars = pd.read_csv(outputs["delta_by_method"])
    assert set(bars["versus"]) == {"standard"}  # no vanilla student in this study
    assert bars.set_index(["recipe", "method"]).loc[("cr_half", "fitnet"), "delta_last_mean"] == pytest.approx(0.5)

    ablation = pd.read_csv(outputs["ablation_csv"])
    assert set(ablation["parameter"]) == {"lambda_lr", "lambda_cr", "cr_schedule"}
    assert "both" not in set(ablation["recipe"])
    lr = ablation[(ablation["parameter"] == "lambda_lr") & (ablation["method"] == "kd")]
    assert list(lr["value"].astype(float)) == [1e-5, 1e-3]  # sorted by value
    assert list(lr["student_last_mean"]) == pytest.approx([52.5, 49.5])
    assert lr["standard_student_last_mean"].eq(51.5).all()

    md = outputs["markdown"].read_text()
    assert "Δ vs standard, last epoch (pp)" in md and "+1.00" in md and "-2.00" in md
    assert "teacher acc (%)" in md and "82.50 ± 0.71" in md
    tex = outputs["latex"].read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "resnet8" in tex and "\\%" in tex
    assert "\\begin{tabular}" in outputs["delta_latex"].read_text()
    for key in ("figure", "delta_figure", "ablation_figure"):
        assert outputs[key].read_bytes().startswith(b"\x89PNG")
    assert outputs["ablation_figure"].stat().st_size > 20_000  # a real plot, not the placeholder


def test_no_ablation_and_no_standard_give_placeholders(tmp_path, monkeypatch):
    cfg = config_mod.validate(_tiny(**{"teacher.recipes": {"soteacher": {"lambda_lr": 1e-5}}}), deep=False)
    _write_results(tmp_path, cfg, lambda job: 60.0)
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)
    assert pd.read_csv(outputs["delta_csv"]).empty and pd.read_csv(outputs["ablation_csv"]).empty
    assert "No recipe to compare" in outputs["delta_markdown"].read_text()
    for key in ("delta_figure", "ablation_figure"):
        png = outputs[key].read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) < 20_000


def test_teachers_count_once_with_runs_missing_and_single_runs_show_no_spread(tmp_path, monkeypatch):
    cfg = config_mod.validate(_tiny(**{"teacher.seeds": [0, 1], "distill.seeds": [0, 1, 2]}), deep=False)
    # teacher seed 0 scores 70 + epoch, seed 1 scores 80 + epoch + 1 (see _write_results)
    _write_results(tmp_path, cfg, lambda job: 50.0 + job["seed"],
                   teacher_acc=lambda job: 70.0 + 10 * job["teacher_seed"])
    for job in jobs.student_jobs(cfg):
        single = job["recipe"] == "soteacher" and job["method"] == "kd"
        if (job["teacher_seed"] == 1 and job["seed"] > 0) or (single and (job["teacher_seed"], job["seed"]) != (0, 0)):
            (tmp_path / jobs.student_metrics(job)).unlink()
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg, allow_partial=True)

    table = pd.read_csv(outputs["csv"]).set_index(["recipe", "method", "teacher_epoch"])
    four_runs = table.loc[("standard", "kd", 2)]  # three runs under teacher seed 0, one under seed 1
    assert four_runs["n"] == 4 and four_runs["n_teachers"] == 2
    assert four_runs["teacher_acc"] == pytest.approx((72.0 + 83.0) / 2)  # not (3 × 72 + 83) / 4
    single = table.loc[("soteacher", "kd", 2)]
    assert single["n"] == 1 and pd.isna(single["student_last_std"]) and pd.isna(single["teacher_acc_std"])
    # paired by seed: the one soteacher run (teacher seed 0, seed 0) against the standard run with the same seeds
    # (50.0), not against the mean of all four standard runs (50.75)
    assert single["delta_last_mean"] == pytest.approx(0.0) and single["delta_last_n"] == 1
    assert pd.isna(single["delta_last_low"]) and single["delta_last_verdict"] == "n = 1, no interval"
    md = outputs["markdown"].read_text()
    single_line = next(line for line in md.splitlines() if "| soteacher | 2 " in line and "| kd " in line)
    assert "±" not in single_line and re.search(r"\|\s*50\.00\s*\|", single_line)
    assert "nan" not in md.lower() and "nan" not in outputs["delta_markdown"].read_text().lower()


def _aggregate_rule_outputs() -> list[str]:
    """The files the Snakemake `aggregate` rule declares (its output block in report.smk)."""
    text = (REPO / "workflow/rules/report.smk").read_text()
    rule = text.index("rule aggregate:")
    block = text[text.index("output:", rule):text.index("params:", rule)]
    return [m.replace("{layout.TABLES_DIR}", layout.TABLES_DIR).replace("{layout.FIGURES_DIR}", layout.FIGURES_DIR)
            for m in re.findall(r'f"([^"]+)"', block)]


def test_aggregate_rule_lists_every_output():
    assert sorted(_aggregate_rule_outputs()) == sorted(str(p) for p in aggregate.output_paths().values())
    report = (REPO / "workflow/rules/report.smk").read_text()
    for path in aggregate.output_paths().values():
        assert path.name in report


# ---- slow: shrunken presets through Snakemake, the HTML report -----------------------------------------------

def _shrunk(preset: str, keep_recipes: list[str] | None = None) -> dict:
    """A paper preset at test scale: its recipes and study shape, on tiny synthetic data, 1 seed, 2 methods."""
    cfg = config_mod.read_yaml(REPO / "config" / "paper" / preset)
    tiny = config_mod.read_yaml(TINY_CONFIG)
    cfg["data"] = tiny["data"]
    t, d = cfg["teacher"], cfg["distill"]
    t.update(archs=["resnet8"], seeds=[0], epochs=2 if t["checkpoint_every"] < t["epochs"] else 1,
             optim={"batch_size": 16})
    t["checkpoint_every"] = 1
    if keep_recipes:
        t["recipes"] = {k: v for k, v in t["recipes"].items() if k in keep_recipes}
    d.update(pairs=[["resnet8", "resnet8"]], seeds=[0], epochs=1, optim={"batch_size": 16},
             methods={"kd": {}, "fitnet": {}})
    cfg["compute"] = {"device": "cpu", "threads": 1}
    return cfg


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    from tests.helpers import run

    return run(["snakemake", "--cores", "2", *args], work)


def _workflow_with(tmp_path: Path, cfg: dict) -> Path:
    config_file = tmp_path / "study.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    config_mod.load(config_file)
    (tmp_path / "work").mkdir()
    return copy_workflow(tmp_path / "work", config_file)


@pytest.mark.slow
def test_fig1_preset_end_to_end(tmp_path):
    cfg = _shrunk("fig1_checkpoints.yaml")
    work = _workflow_with(tmp_path, cfg)
    _snakemake(work)
    curves = pd.read_csv(work / "results/tables/checkpoint_curves.csv")
    assert sorted(set(curves["teacher_epoch"])) == [1, 2] and set(curves["recipe"]) == {"standard", "soteacher"}
    assert (work / "results/figures/teacher_vs_student.png").stat().st_size > 10_000
    bars = pd.read_csv(work / "results/tables/delta_by_method.csv")
    assert set(bars["method"]) == {"kd", "fitnet"} and set(bars["recipe"]) == {"soteacher"}
    assert pd.read_csv(work / "results/tables/ablation.csv").empty  # no ablation recipes: placeholder figure
    assert (work / "results/figures/ablation.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_fig2_preset_end_to_end_and_html_report(tmp_path):
    cfg = _shrunk("fig2_ablation.yaml", keep_recipes=["standard", "soteacher", "lr_1em4", "cr_2", "sched_cosine"])
    work = _workflow_with(tmp_path, cfg)
    _snakemake(work)
    ablation = pd.read_csv(work / "results/tables/ablation.csv")
    assert set(ablation["parameter"]) == {"lambda_lr", "lambda_cr", "cr_schedule"}
    assert set(ablation["recipe"]) == {"soteacher", "lr_1em4", "cr_2", "sched_cosine"}
    assert ablation["standard_student_last_mean"].notna().all()
    assert (work / "results/figures/ablation.png").stat().st_size > 20_000
    assert len(pd.read_csv(work / "results/tables/delta.csv")) == 4 * 2  # 4 recipes x 2 methods, last epoch

    _snakemake(work, "--report", "results/report.html")
    html = (work / "results/report.html").read_text()
    # self-contained: the figures are embedded as data, with their captions
    embedded = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]
    if not embedded:  # snakemake 9 packs results into its JS bundle: look for the base64 PNG signature
        embedded = [base64.b64decode(m + "=" * (-len(m) % 4))
                    for m in re.findall(r"iVBORw0KGgo[A-Za-z0-9+/]{100,}", html)]
    pngs = [b for b in embedded if b.startswith(b"\x89PNG")]
    assert len(pngs) >= 3, "expected the Fig. 1, Fig. 2 and Δ figures embedded in the report"
    for caption in ("Paper Fig. 1 shape", "Paper Fig. 2 shape", "Recipe minus standard teacher"):
        assert caption in html


def test_configfile_replaces_the_default_study_instead_of_merging(tmp_path):
    """`make run CONFIG=preset` passes --configfile: the preset alone is the study (the default's fitnet must not
    leak into a KD-only preset)."""
    from tests.helpers import run

    work = tmp_path / "work"
    work.mkdir()
    copy_workflow(work, REPO / "config" / "config.yaml")  # the default study, with kd + fitnet
    study = _shrunk("fig1_checkpoints.yaml")
    study["distill"]["methods"] = {"kd": {}}
    (work / "study.yaml").write_text(yaml.safe_dump(study))
    out = run(["snakemake", "-n", "--cores", "1", "--configfile", "study.yaml"], work)
    text = out.stdout + out.stderr
    assert "/kd/resnet8/" in text and "/fitnet/" not in text
