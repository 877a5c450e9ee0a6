"""The paper's presets (config/paper/) and the distill.pairs they use; the slow tests run shrunken Fig. 1 / Fig. 2
presets through Snakemake and build the HTML report (the tables and figures from hand-written metrics files are in
test_aggregate.py, the planner's counts in test_plan.py).
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from soteacher.core import layout
from soteacher.report import ablation
from soteacher.report.registry import outputs
from soteacher.study import config as config_mod
from soteacher.study import plan, teacher_jobs
from soteacher.study import student_jobs as jobs
from tests.helpers import REPO, TINY_CONFIG, copy_workflow, tiny_raw

PRESETS = sorted((REPO / "config" / "paper").glob("*.yaml"))



# ---- distill.pairs -----------------------------------------------------------------------------------------

def test_pairs_replace_the_product():
    raw = tiny_raw(**{"teacher.archs": ["resnet8", "resnet14"], "distill.students": ["resnet8", "wrn_16_1"]})
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
    raw = tiny_raw(**{"distill.pairs": [["resnet8", "wrn_16_1"]], "distill.students": ["resnet8"]})
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
        config_mod.validate(tiny_raw(**{"distill.pairs": pairs}))


def test_teacher_in_no_pair_is_an_error():
    raw = tiny_raw(**{"teacher.archs": ["resnet8", "resnet14"], "distill.pairs": [["resnet8", "resnet8"]]})
    with pytest.raises(config_mod.ConfigError, match="resnet14 appear in no distill.pairs entry"):
        config_mod.validate(raw)


def test_deep_check_covers_only_the_pairs():
    # fsp needs equal channel counts: resnet8 -> resnet8 works, resnet8 -> wrn_16_2 does not
    raw = tiny_raw(**{"distill.methods": {"fsp": {}}, "distill.students": ["wrn_16_2"],
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
    from soteacher.methods import METHODS

    table = config_mod.load(REPO / "config/paper/cifar100_table.yaml", deep=False)
    fsp = config_mod.load(REPO / "config/paper/cifar100_table_fsp.yaml", deep=False)
    assert set(map(tuple, table["distill"]["pairs"])) == {
        ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet32x4", "resnet8x4"),
        ("vgg13", "vgg8"), ("resnet32x4", "ShuffleNetV2"), ("wrn_40_2", "ShuffleNetV1"), ("vgg13", "MobileNetV2")}
    # not the index-target arms: CIFAR-100 has no p* (oracle), and filter_kd needs teacher.filter_table, which
    # would rename the preset's teachers (a Filter-KD comparison is a study of its own)
    assert set(table["distill"]["methods"]) | set(fsp["distill"]["methods"]) == set(METHODS) - {"oracle", "filter_kd"}
    assert table["teacher"]["epochs"] == 240 and table["teacher"]["optim"]["lr_milestones"] == [150, 180, 210]
    assert set(table["teacher"]["recipes"]) == {"standard", "soteacher"}
    assert len(table["teacher"]["seeds"]) * len(table["distill"]["seeds"]) == 3


def test_fig2_preset_varies_one_hyperparameter_at_a_time():
    cfg = config_mod.load(REPO / "config/paper/fig2_ablation.yaml", deep=False)
    points = pd.DataFrame(ablation.ablation_points(cfg["teacher"]["recipes"], cfg["report"]["ablation_recipe"],
                                                   cfg["report"]["reference_recipe"]))
    assert set(points["parameter"]) == {"lipschitz.weight", "consistency.weight", "consistency.schedule"}
    # every recipe but standard is on some axis; the default is on all three
    assert set(points["recipe"]) == set(cfg["teacher"]["recipes"]) - {"standard"}
    assert points[points["is_default"]]["recipe"].eq("soteacher").all() and points["is_default"].sum() == 3


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
    tables, figures = work / layout.tables_dir(cfg["name"]), work / layout.figures_dir(cfg["name"])
    curves = pd.read_csv(tables / "checkpoint_curves.csv")
    assert sorted(set(curves["teacher_epoch"])) == [1, 2] and set(curves["recipe"]) == {"standard", "soteacher"}
    assert (figures / "teacher_vs_student.png").stat().st_size > 10_000
    bars = pd.read_csv(tables / "delta_by_method.csv")
    assert set(bars["method"]) == {"kd", "fitnet"} and set(bars["recipe"]) == {"soteacher"}
    assert pd.read_csv(tables / "ablation.csv").empty  # no ablation recipes: placeholder figure
    assert (figures / "ablation.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_fig2_preset_end_to_end_and_html_report(tmp_path):
    cfg = _shrunk("fig2_ablation.yaml", keep_recipes=["standard", "soteacher", "lr_1em4", "cr_2", "sched_cosine"])
    work = _workflow_with(tmp_path, cfg)
    _snakemake(work)
    tables, figures = work / layout.tables_dir(cfg["name"]), work / layout.figures_dir(cfg["name"])
    ablation = pd.read_csv(tables / "ablation.csv")
    assert set(ablation["parameter"]) == {"lipschitz.weight", "consistency.weight", "consistency.schedule"}
    assert set(ablation["recipe"]) == {"soteacher", "lr_1em4", "cr_2", "sched_cosine"}
    assert ablation["standard_student_last_mean"].notna().all()
    assert (figures / "ablation.png").stat().st_size > 20_000
    assert len(pd.read_csv(tables / "delta.csv")) == 4 * 2  # 4 recipes x 2 methods, last epoch

    _snakemake(work, "--report", "results/report.html")
    html = (work / "results/report.html").read_text()
    # self-contained: the figures are embedded as data, with their captions
    embedded = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]
    if not embedded:  # snakemake 9 packs results into its JS bundle: look for the base64 PNG signature
        embedded = [base64.b64decode(m + "=" * (-len(m) % 4))
                    for m in re.findall(r"iVBORw0KGgo[A-Za-z0-9+/]{100,}", html)]
    pngs = [b for b in embedded if b.startswith(b"\x89PNG")]
    assert len(pngs) >= 3, "expected the Fig. 1, Fig. 2 and Δ figures embedded in the report"
    for out in outputs("any").values():  # every file the package puts in the report, with its caption
        if out.caption:
            caption = (work / "workflow/report" / out.caption).read_text()
            assert caption[:20] in html, out.path


@pytest.mark.slow
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
    assert re.search(r"/kd-[0-9a-f]{8}/resnet8/", text) and "/fitnet-" not in text
