"""The report package: the summary, delta and ablation tables, the teachers, paired-students and early-stopping
tables, the seed-paired Δs and the figures, from hand-written metrics files whose numbers are chosen so that every
expected value below is computed by hand; the reference recipe from the config; and the declarations, which both the
Snakemake rule and the aggregate run read."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from soteacher import report as aggregate
from soteacher.core import layout
from soteacher.report import ablation as ablation_mod
from soteacher.report.registry import outputs
from soteacher.study import config as config_mod
from soteacher.study import student_jobs as jobs
from soteacher.study import teacher_jobs
from soteacher.study.identity import data_id
from tests.helpers import REPO, TINY_CONFIG, copy_workflow, python_output, run, tiny_raw

# t_{0.975, df}, from a t table: to 6 decimals (±5e-7), so an interval end computed with them is off by
# ≤ 5e-7 · s/√n (≤ 8e-7 for the data below): the abs tolerances of 1e-6 and 1e-5
T975 = {1: 12.706205}
REFERENCE = {"bayes_acc": {"train": 88.0, "val": 87.0, "test": 86.0},
             "expected_max_pstar": {"train": 85.0, "val": 84.5, "test": 84.0}}
# per (recipe, teacher seed): epoch -> value, for the three saved checkpoints (epochs 1, 2, 3)
VAL_ACC = {("standard", 0): [70.0, 65.0, 60.0], ("standard", 1): [60.0, 72.0, 71.0]}  # val-best: ep 1 / ep 2
TEST_ACC = {("standard", 0): [60.0, 62.0, 64.0], ("standard", 1): [61.0, 63.0, 66.0]}  # test-best: ep 3 for both
TV_TRAIN = {("standard", 0): [0.30, 0.20, 0.25], ("standard", 1): [0.28, 0.22, 0.30],
            ("soteacher", 0): [0.30, 0.18, 0.15], ("soteacher", 1): [0.29, 0.17, 0.16]}
TRAIN_EVAL = {("standard", 0): 95.0, ("standard", 1): 97.0, ("soteacher", 0): 90.0, ("soteacher", 1): 91.0}
# soteacher − standard for one student, per (teacher seed, student seed): the [1, 2, 3, 6] of tests/test_stats.py
GAIN = {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 3.0, (1, 1): 6.0}


def _config(teacher_seeds: list[int], student_seeds: list[int], val: bool = True) -> dict:
    raw = config_mod.read_yaml(TINY_CONFIG)
    raw["teacher"].update(seeds=teacher_seeds, epochs=3, checkpoint_every=1)
    raw["distill"].update(seeds=student_seeds, checkpoints=[2, 3])  # epoch 1 is saved but not distilled
    cfg = config_mod.validate(raw, deep=False)
    # the vanilla student, one more method of every distill job (added after validation: this test does
    # not depend on the schema knowing it)
    cfg["distill"]["methods"]["vanilla"] = {}
    return cfg


def _teacher_entry(recipe: str, teacher_seed: int, epoch: int, val: bool) -> dict:
    i = epoch - 1
    entry = {"epoch": epoch, "lr": 0.05, "train_loss": 2.0 - 0.5 * i, "train_ce": 1.5 - 0.4 * i - 0.1 * teacher_seed,
             "train_acc": 50.0 + 10 * i, "test_acc": TEST_ACC.get((recipe, teacher_seed), [70.0, 71.0, 72.0])[i],
             "test_loss": 1.0, "train_eval_acc": TRAIN_EVAL[(recipe, teacher_seed)] - 10 * (2 - i),
             "tv_pstar_train": TV_TRAIN[(recipe, teacher_seed)][i], "tv_pstar_test": 0.3 + 0.01 * teacher_seed,
             "kl_pstar_train": 2 * TV_TRAIN[(recipe, teacher_seed)][i], "kl_pstar_test": 0.6}
    if val:
        entry["val_acc"] = VAL_ACC.get((recipe, teacher_seed), [50.0, 51.0, 52.0])[i]
    return entry


def _student_acc(job: dict) -> float:
    if job["method"] == "vanilla":
        return 45.0 + job["seed"]
    gain = GAIN.get((job["teacher_seed"], job["seed"]), 0.0) if job["recipe"] == "soteacher" else 0.0
    return 50.0 + job["seed"] + 2 * job["teacher_seed"] + job["epoch"] + 0.5 * (job["method"] == "fitnet") + gain


def _write(root: Path, cfg: dict, val: bool = True, reference: bool = True) -> None:
    manifest = root / layout.data_dir(data_id(cfg)) / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"reference": REFERENCE} if reference else {}))
    for job in teacher_jobs.teacher_jobs(cfg):
        history = [_teacher_entry(job["recipe"], job["teacher_seed"], e, val) for e in (1, 2, 3)]
        path = root / layout.teacher_metrics(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"checkpoints": {str(h["epoch"]): h for h in history}, "history": history}))
    for job in jobs.student_jobs(cfg):
        acc = _student_acc(job)
        path = root / jobs.student_metrics(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "last_acc": acc, "best_acc": acc + 1.0, "best_epoch": 1, "best_chosen_on": "val" if val else "test",
            "last_tv_pstar_test": 0.2 + 0.01 * job["seed"], "agreement": 90.0 + job["seed"],
            "kl_teacher_student": 0.1 * (1 + job["teacher_seed"]), "history": []}))


@pytest.fixture
def study(tmp_path, monkeypatch) -> dict[str, Path]:
    cfg = _config([0, 1], [0, 1])
    _write(tmp_path, cfg)
    monkeypatch.chdir(tmp_path)
    return aggregate.run(cfg)


def _half(values: list[float]) -> float:
    """Hand t-interval half-width: t · s / √n."""
    n, mean = len(values), sum(values) / len(values)
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return T975[n - 1] * s / math.sqrt(n)


@pytest.mark.slow  # the whole aggregate job: every table and figure written (~2.5 s)
def test_student_deltas_paired_by_seed_with_hand_intervals(study):
    table = pd.read_csv(study["students_paired_csv"]).set_index(["recipe", "method", "teacher_epoch"])
    assert "vanilla" not in set(table.index.get_level_values("method"))
    row = table.loc[("soteacher", "kd", 3)]
    # soteacher − standard per (teacher seed, student seed) = 1, 2, 3, 6; per teacher seed (the unit) 1.5, 4.5:
    # mean 3, s = 3 / √2, s / √2 = 1.5, half-width t_{.975,1} · 1.5
    assert row["delta_standard_mean"] == pytest.approx(3.0) and row["delta_standard_n"] == 2
    assert row["delta_standard_low"] == pytest.approx(3.0 - 12.706205 * 1.5, abs=1e-5)
    assert row["delta_standard_high"] == pytest.approx(3.0 + _half([1.5, 4.5]), abs=1e-6)
    assert row["delta_standard_verdict"] == "inconclusive"
    # standard kd at ep 3 = 53 + seed + 2 · teacher_seed, vanilla = 45 + seed: KD − vanilla = 8, 8 | 10, 10, so
    # per teacher seed 8, 10 (the KD students' mean minus the vanilla mean over the same student seeds)
    std = table.loc[("standard", "kd", 3)]
    assert pd.isna(std["delta_standard_mean"])
    assert std["delta_vanilla_mean"] == pytest.approx(9.0) and std["delta_vanilla_n"] == 2
    assert std["delta_vanilla_high"] - 9.0 == pytest.approx(12.706205 * 1.0, abs=1e-5)  # s = √2, s / √2 = 1
    # four pairs as if independent would say "better" (9 ± 1.84); two teacher seeds cannot
    assert std["delta_vanilla_verdict"] == "inconclusive" and std["vanilla_last_mean"] == pytest.approx(45.5)
    assert std["agreement_mean"] == pytest.approx(90.5) and std["kl_teacher_student_mean"] == pytest.approx(0.15)
    assert std["student_tv_pstar_test_mean"] == pytest.approx(0.205)
    md = study["students_paired_md"].read_text()
    assert "+3.00 ± 19.06" in md and "over the n teacher seeds" in md and "nan" not in md.lower()

    # the same pairs in delta.csv (recipe − standard) and delta_by_method.csv (one cell: the same interval)
    delta = pd.read_csv(study["delta_csv"]).set_index(["recipe", "method", "teacher_epoch"])
    assert "vanilla" not in set(delta.index.get_level_values("method"))
    assert delta.loc[("soteacher", "kd", 3), "delta_last_low"] == pytest.approx(row["delta_standard_low"])
    assert delta.loc[("soteacher", "kd", 3), "delta_last_n"] == 2
    # the primary comparison (the schema's default: soteacher kd at its last checkpoint), every other secondary
    assert delta.loc[("soteacher", "kd", 3), "comparison"] == "primary"
    assert set(delta.drop(index=[("soteacher", "kd", 3)])["comparison"]) == {"secondary"}
    assert "*primary* comparison" in study["delta_md"].read_text()
    bars = pd.read_csv(study["delta_by_method_csv"]).set_index(["versus", "recipe", "method"])
    assert bars.loc[("standard", "soteacher", "kd"), "delta_last_high"] == pytest.approx(
        3.0 + _half([1.5, 4.5]), abs=1e-6)
    assert bars.loc[("standard", "soteacher", "kd"), "comparison"] == "primary"
    assert set(bars.drop(index=[("standard", "soteacher", "kd")])["comparison"]) == {"secondary"}
    # KD − vanilla for soteacher kd at ep 3: 8 + 2 · teacher_seed + gain = 9, 10 | 13, 16: per teacher seed 9.5, 14.5
    assert bars.loc[("vanilla", "soteacher", "kd"), "delta_last_mean"] == pytest.approx(12.0)
    assert bars.loc[("vanilla", "soteacher", "kd"), "delta_last_low"] == pytest.approx(
        12.0 - _half([9.5, 14.5]), abs=1e-6)

    # runs trained: 2 recipes x 2 teacher seeds x 2 checkpoints x 2 student seeds x (kd, fitnet), and one vanilla
    # run per student seed (48 table rows: the vanilla run stands under every checkpoint)
    assert json.loads(study["summary_json"].read_text())["runs"] == 32 + 2
    headline = json.loads(study["summary_json"].read_text())
    summary = headline["recipes"]
    # fitnet adds 0.5 on both sides: each teacher seed's Δ averaged over kd and fitnet is still 1.5, 4.5
    assert summary["soteacher"]["student_delta_vs_standard"]["mean"] == pytest.approx(3.0)
    assert summary["soteacher"]["student_delta_vs_standard"]["low"] == pytest.approx(3.0 - 19.0593, abs=1e-4)
    assert summary["soteacher"]["student_delta_vs_standard"]["n"] == 2
    assert headline["primary"] == {
        "recipe": "soteacher", "reference": "standard", "method": "kd", "checkpoint": 3, "teachers": "resnet8",
        "students": "resnet8", "metric": "student last-epoch test accuracy (pp)", "mean": 3.0,
        "low": round(3.0 - _half([1.5, 4.5]), 4), "high": round(3.0 + _half([1.5, 4.5]), 4), "n": 2,
        "unit": "teacher seeds", "verdict": "inconclusive"}
    assert summary["standard"]["teacher_tv_pstar_train"] == pytest.approx(0.275)
    assert summary["soteacher"]["teacher_tv_pstar_train"] == pytest.approx(0.155)
    # the standard teachers' regime, by hand from the fabricated histories: train-eval acc 95, 97; train CE at
    # epoch 3 1.5 − 0.8 − 0.1 · seed; TV rises 0.25 − 0.20 and 0.30 − 0.22 above their minima; validation picks
    # epoch 1 (test 60) for seed 0 and epoch 2 (test 63) for seed 1, against the Bayes test accuracy 86
    assert headline["regime"] == {"resnet8": {
        "recipe": "standard", "n": 2, "checkpoint": 3, "train_eval_acc": 96.0, "train_ce": pytest.approx(0.65),
        "expected_max_pstar_train": 85.0, "tv_train_turn_up": pytest.approx(0.065), "val_best_test_acc": 61.5,
        "bayes_test_acc": 86.0, "val_best_gap_to_bayes": -24.5}}


@pytest.mark.slow
def test_teachers_table_regime_and_paired_teacher_deltas(study):
    teachers = pd.read_csv(study["teachers_csv"]).set_index("recipe")
    std = teachers.loc["standard"]
    assert std["teacher_epoch"] == 3 and std["n_teachers"] == 2
    assert std["train_eval_acc_mean"] == pytest.approx(96.0)
    assert std["train_eval_acc_low"] == pytest.approx(96.0 - 12.706205, abs=1e-5)  # s = √2, n = 2
    assert std["expected_max_pstar_train"] == 85.0 and std["fit_gap_mean"] == pytest.approx(11.0)
    # TV on train: seed 0 0.30, 0.20, 0.25 (min 0.20 at ep 2, +0.05); seed 1 0.28, 0.22, 0.30 (min 0.22, +0.08)
    assert std["tv_train_min_mean"] == pytest.approx(0.21)
    assert std["tv_train_min_epoch_by_seed"] == "seed 0: 2; seed 1: 2"
    assert std["tv_train_turn_up_mean"] == pytest.approx(0.065)
    # val-chosen among all saved checkpoints: seed 0 ep 1 (test 60), seed 1 ep 2 (test 63); test-best is ep 3
    assert std["val_best_epoch_by_seed"] == "seed 0: 1; seed 1: 2"
    assert std["val_best_test_acc_mean"] == pytest.approx(61.5)
    assert std["bayes_test_acc"] == 86.0 and std["val_best_gap_to_bayes"] == pytest.approx(-24.5)
    # soteacher − standard TV on train at ep 3, by teacher seed: 0.15 − 0.25, 0.16 − 0.30 = -0.10, -0.14
    sot = teachers.loc["soteacher"]
    assert sot["delta_tv_pstar_train_mean"] == pytest.approx(-0.12) and sot["delta_tv_pstar_train_n"] == 2
    assert sot["delta_tv_pstar_train_high"] == pytest.approx(-0.12 + 12.706205 * 0.02, abs=1e-6)
    assert sot["delta_tv_pstar_train_verdict"] == "inconclusive"
    assert pd.isna(std["delta_tv_pstar_train_mean"])
    md = study["teachers_md"].read_text()
    assert "E[max p*] on train = 85.00 %" in md and "Bayes accuracy on test = 86.00 %" in md
    assert "seed 0: 1; seed 1: 2" in md and "-0.1200 ± 0.2541 (inconclusive)" in md and "nan" not in md.lower()


@pytest.mark.slow
def test_early_stopping_uses_the_val_best_distilled_checkpoint(study):
    early = pd.read_csv(study["early_stopping_csv"]).set_index(["recipe", "method"])
    row = early.loc[("soteacher", "kd")]
    # val-best distilled checkpoint (ep 1 is saved but not distilled): seed 0 ep 2 (65 > 60), seed 1 ep 2 (72 > 71);
    # test-best would be ep 3 for both (Δ = 1, 2, 3, 6, mean 3). Δ = 3 − 2 + gain = 2, 3 | 4, 7: per teacher seed
    # 2.5, 5.5
    assert row["standard_epoch_by_seed"] == "seed 0: 2; seed 1: 2" and row["recipe_epoch"] == 3
    assert row["delta_mean"] == pytest.approx(4.0) and row["delta_n"] == 2
    assert row["delta_low"] == pytest.approx(4.0 - _half([2.5, 5.5]), abs=1e-6)
    assert row["delta_low"] == pytest.approx(4.0 - 12.706205 * 1.5, abs=1e-5)
    assert row["delta_verdict"] == "inconclusive"
    assert row["recipe_last_mean"] == pytest.approx(57.5)  # 50 + seed 0.5 + 2 · teacher_seed 1 + ep 3 + gain 3
    assert row["early_stopped_last_mean"] == pytest.approx(53.5)  # 50 + 0.5 + 1 + ep 2
    assert ("standard", "kd") not in early.index and "vanilla" not in set(early.index.get_level_values("method"))
    assert "+4.00 ± 19.06" in study["early_stopping_md"].read_text()


@pytest.mark.slow
def test_every_output_exists_and_figures_are_real_pngs(study):
    # the declared files and nothing else: dvc.yaml tracks the tables and figures folders whole
    declared = outputs("tiny")
    assert set(study) == set(declared)
    written = {p for folder in (layout.tables_dir("tiny"), layout.figures_dir("tiny")) for p in folder.iterdir()}
    assert written == {out.path for out in declared.values()} == set(study.values())
    figures = [key for key, out in declared.items() if out.path.suffix == ".png"]
    assert len(figures) == 6
    for key in figures:
        png = study[key].read_bytes()
        assert png.startswith(b"\x89PNG"), key
        # real plots, not placeholders (this study has no ablation recipes: that one is the placeholder)
        assert (len(png) > 20_000) == (key != "ablation_png"), key


@pytest.mark.slow
def test_the_reference_recipe_comes_from_the_config(study, tmp_path, monkeypatch):
    """The study of the ``study`` fixture with its standard recipe named ``baseline`` and configured as the
    reference: every table is the same, ``baseline`` where it said ``standard`` (the ablation aside: another
    module, with its own reference)."""
    cfg = _config([0, 1], [0, 1])
    recipes = cfg["teacher"]["recipes"]
    cfg["teacher"]["recipes"] = {"baseline": recipes["standard"], "soteacher": recipes["soteacher"]}
    cfg["report"]["reference_recipe"] = "baseline"
    for numbers in (VAL_ACC, TEST_ACC, TV_TRAIN, TRAIN_EVAL):  # the baseline teachers score what standard did
        for (recipe, seed), value in list(numbers.items()):
            if recipe == "standard":
                monkeypatch.setitem(numbers, ("baseline", seed), value)
    renamed = tmp_path / "renamed"
    _write(renamed, cfg)
    monkeypatch.chdir(renamed)
    outputs = aggregate.run(cfg)
    assert set(outputs) == set(study)
    for key, path in study.items():
        if path.suffix == ".png" or key.startswith("ablation"):
            continue
        expected = re.sub(r"standard(?! deviation)", "baseline", path.read_text())  # a std stays a std
        if path.suffix == ".json":
            assert json.loads(outputs[key].read_text()) == json.loads(expected), key
        else:
            assert outputs[key].read_text() == expected, key
    assert "baseline" in outputs["students_paired_md"].read_text()


@pytest.mark.slow
def test_single_seed_rows_say_no_interval(tmp_path, monkeypatch):
    cfg = _config([0], [0])
    _write(tmp_path, cfg)
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)
    table = pd.read_csv(outputs["students_paired_csv"])
    assert (table["delta_vanilla_verdict"] == "n = 1, no interval").all()
    md = outputs["students_paired_md"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| resnet8")]
    assert rows and all("n = 1, no interval" in line and "±" not in line for line in rows)
    sot = next(line for line in rows if "| soteacher |" in line and "| kd " in line and "| 3 " in line)
    assert re.search(r"\|\s*\+1\.00\s*\|", sot)  # the one pair: gain 1 at (teacher seed 0, seed 0)
    early = outputs["early_stopping_md"].read_text()
    assert "n = 1, no interval" in early and "±" not in early.split("\n\n")[1]
    summary = json.loads(outputs["summary_json"].read_text())["recipes"]["soteacher"]["student_delta_vs_standard"]
    assert summary == {"mean": 1.0, "low": None, "high": None, "n": 1}


@pytest.mark.slow
def test_no_val_no_pstar_no_history_still_writes_everything(tmp_path, monkeypatch):
    """Files from before the validation split and the histories: notes instead of numbers, placeholders."""
    cfg = _config([0, 1], [0])
    cfg["distill"]["methods"].pop("vanilla")
    _write(tmp_path, cfg, val=False, reference=False)
    for job in teacher_jobs.teacher_jobs(cfg):  # old teacher files: checkpoints with test accuracy only
        path = tmp_path / layout.teacher_metrics(job)
        path.write_text(json.dumps({"checkpoints": {str(e): {"test_acc": 70.0 + e} for e in (1, 2, 3)}}))
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)
    assert all(p.is_file() for p in outputs.values())
    assert pd.read_csv(outputs["early_stopping_csv"]).empty
    assert "needs a validation split" in outputs["early_stopping_md"].read_text()
    assert "No p* reference" in outputs["teachers_md"].read_text()
    for key in ("tv_curves_png", "teacher_curves_png"):
        png = outputs[key].read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) < 20_000  # placeholder
    bars = pd.read_csv(outputs["delta_by_method_csv"])
    assert set(bars["versus"]) == {"standard"}
    students = pd.read_csv(outputs["students_paired_csv"])
    assert students["delta_vanilla_mean"].isna().all() and students["agreement_mean"].notna().all()


@pytest.mark.slow
def test_without_standard_recipe(tmp_path, monkeypatch):
    cfg = _config([0], [0, 1])
    cfg["teacher"]["recipes"] = {"soteacher": cfg["teacher"]["recipes"]["soteacher"]}
    _write(tmp_path, cfg)
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)
    assert "No `standard` recipe" in outputs["early_stopping_md"].read_text()
    assert pd.read_csv(outputs["delta_csv"]).empty
    bars = pd.read_csv(outputs["delta_by_method_csv"])
    assert set(bars["versus"]) == {"vanilla"}  # the vanilla comparison needs no standard teacher
    assert outputs["delta_by_method_png"].stat().st_size > 20_000


@pytest.mark.slow
def test_best_epoch_column_names_the_split_that_chose_it(study):
    md = study["summary_md"].read_text()
    assert "student acc, best epoch, chosen on val (%)" in md
    assert (pd.read_csv(study["summary_csv"])["best_chosen_on"] == "val").all()



# ---- summary, deltas and ablation from hand-written metrics ----------------------------------------------------------

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


@pytest.mark.slow
def test_tables_deltas_and_ablation_from_known_numbers(tmp_path, monkeypatch):
    recipes = {"standard": {"ce": {}}, "soteacher": {"ce": {}, "lipschitz": {}, "consistency": {}},
               "lr_big": {"ce": {}, "lipschitz": {"weight": 1e-3}, "consistency": {}},
               "cr_half": {"ce": {}, "lipschitz": {}, "consistency": {"weight": 0.5}},
               "cosine": {"ce": {}, "lipschitz": {}, "consistency": {"schedule": "cosine"}},
               "both": {"ce": {}, "consistency": {"weight": 2.0}}}  # two changes: no ablation point
    cfg = config_mod.validate(tiny_raw(**{"teacher.recipes": recipes, "teacher.seeds": [0, 1],
                                       "distill.seeds": [0, 1]}), deep=False)
    gain = {"standard": 0.0, "soteacher": 1.0, "lr_big": -2.0, "cr_half": 0.5, "cosine": 0.25, "both": 0.0}
    _write_results(tmp_path, cfg, lambda job: 50.0 + gain[job["recipe"]] + job["seed"] + (job["method"] == "kd"))
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)

    table = pd.read_csv(outputs["summary_csv"])
    row = table[(table["recipe"] == "soteacher") & (table["method"] == "kd") & (table["teacher_epoch"] == 2)].iloc[0]
    assert row["student_last_mean"] == pytest.approx(52.5) and row["n"] == 4
    # every (teacher seed, student seed) pair differs by the recipe's gain: a zero-width interval above 0
    assert row["delta_last_mean"] == pytest.approx(1.0) and row["delta_best_mean"] == pytest.approx(1.0)
    assert row["delta_last_n"] == 2 and row["delta_last_low"] == pytest.approx(1.0)
    assert row["delta_last_verdict"] == "better"
    assert row["teacher_acc"] == pytest.approx(82.5) and row["teacher_acc_std"] == pytest.approx(0.7071, abs=1e-3)
    assert row["n_teachers"] == 2
    assert table[table["recipe"] == "standard"]["delta_last_mean"].isna().all()

    delta = pd.read_csv(outputs["delta_csv"])
    assert set(delta["recipe"]) == set(recipes) - {"standard"}
    assert (delta[delta["recipe"] == "lr_big"]["sign_last"] == "-").all()
    assert (delta[delta["recipe"] == "soteacher"]["sign_last"] == "+").all()
    bars = pd.read_csv(outputs["delta_by_method_csv"])
    assert set(bars["versus"]) == {"standard"}  # no vanilla student in this study
    assert bars.set_index(["recipe", "method"]).loc[("cr_half", "fitnet"), "delta_last_mean"] == pytest.approx(0.5)

    ablation = pd.read_csv(outputs["ablation_csv"])
    assert set(ablation["parameter"]) == {"lipschitz.weight", "consistency.weight", "consistency.schedule"}
    assert "both" not in set(ablation["recipe"])
    lr = ablation[(ablation["parameter"] == "lipschitz.weight") & (ablation["method"] == "kd")]
    assert list(lr["value"].astype(float)) == [1e-5, 1e-3]  # sorted by value
    assert list(lr["student_last_mean"]) == pytest.approx([52.5, 49.5])
    assert lr["standard_student_last_mean"].eq(51.5).all()

    md = outputs["summary_md"].read_text()
    assert "Δ vs standard, last epoch (pp)" in md and "+1.00" in md and "-2.00" in md
    assert "teacher acc (%)" in md and "82.50 ± 0.71" in md
    tex = outputs["summary_tex"].read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "resnet8" in tex and "\\%" in tex
    assert "\\begin{tabular}" in outputs["delta_tex"].read_text()
    for key in ("teacher_vs_student_png", "delta_by_method_png", "ablation_png"):
        assert outputs[key].read_bytes().startswith(b"\x89PNG")
    assert outputs["ablation_png"].stat().st_size > 20_000  # a real plot, not the placeholder


def _points(recipes: dict, base: str = "soteacher", reference: str = "standard") -> dict[str, tuple]:
    filled = config_mod.validate({"teacher": {"recipes": recipes}}, deep=False)["teacher"]["recipes"]
    return {p["recipe"]: (p["parameter"], p["value"]) for p in ablation_mod.ablation_points(filled, base, reference)
            if not p["is_default"]}


def test_ablation_points_are_read_from_the_terms_not_the_names():
    sot = {"ce": {}, "lipschitz": {}, "consistency": {}}
    points = _points({
        "standard": {"ce": {}}, "soteacher": sot,
        "no_lr": {"ce": {}, "consistency": {}},  # a term left out: its weight at 0
        "no_cr": {"ce": {}, "lipschitz": {}},
        "spectral": {**sot, "lipschitz": {"bound": "spectral"}},
        "late_step": {**sot, "consistency": {"schedule": "step", "start_epoch": 150}},  # schedule and its start
        "cosine": {**sot, "consistency": {"schedule": "cosine"}},
        "no_ce": {"lipschitz": {}, "consistency": {}},  # ce has no weight: leaving it out is no axis
        "smoothed": {**sot, "label_smoothing": {}},  # a term the base lacks: no axis
        "two_terms": {"ce": {}, "lipschitz": {"weight": 1e-4}, "consistency": {"weight": 2.0}},
        "two_params": {**sot, "consistency": {"weight": 2.0, "schedule": "cosine"}},
    })
    assert points == {
        "no_lr": ("lipschitz.weight", 0.0), "no_cr": ("consistency.weight", 0.0),
        "spectral": ("lipschitz.bound", "spectral"), "late_step": ("consistency.schedule", "step@150"),
        "cosine": ("consistency.schedule", "cosine")}


def test_ablation_base_and_reference_come_from_the_config_names():
    recipes = {"standard": {"ce": {}}, "lipschitz_only": {"ce": {}, "lipschitz": {}},
               "strong": {"ce": {}, "lipschitz": {"weight": 1e-3}}}
    # the reference is the figure's line, not a point, even where it lies on an axis (lipschitz.weight = 0)
    assert _points(recipes, base="lipschitz_only") == {"strong": ("lipschitz.weight", 1e-3)}
    assert _points(recipes, base="lipschitz_only", reference="none") == {
        "standard": ("lipschitz.weight", 0.0), "strong": ("lipschitz.weight", 1e-3)}
    filled = config_mod.validate({"teacher": {"recipes": recipes}}, deep=False)["teacher"]["recipes"]
    base = [p for p in ablation_mod.ablation_points(filled, "lipschitz_only", "standard") if p["is_default"]]
    assert base == [{"parameter": "lipschitz.weight", "value": 1e-5, "recipe": "lipschitz_only", "is_default": True}]
    assert ablation_mod.ablation_points(filled, "soteacher", "standard") == []  # no such base recipe


@pytest.mark.slow
def test_no_ablation_and_no_standard_give_placeholders(tmp_path, monkeypatch):
    cfg = config_mod.validate(tiny_raw(**{"teacher.recipes": {"soteacher": {"ce": {}, "lipschitz": {}}}}),
                              deep=False)
    _write_results(tmp_path, cfg, lambda job: 60.0)
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg)
    assert pd.read_csv(outputs["delta_csv"]).empty and pd.read_csv(outputs["ablation_csv"]).empty
    assert "No recipe to compare" in outputs["delta_md"].read_text()
    for key in ("delta_by_method_png", "ablation_png"):
        png = outputs[key].read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) < 20_000


@pytest.mark.slow
def test_teachers_count_once_with_runs_missing_and_single_runs_show_no_spread(tmp_path, monkeypatch):
    cfg = config_mod.validate(tiny_raw(**{"teacher.seeds": [0, 1], "distill.seeds": [0, 1, 2]}), deep=False)
    # teacher seed 0 scores 70 + epoch, seed 1 scores 80 + epoch + 1 (see _write_results)
    _write_results(tmp_path, cfg, lambda job: 50.0 + job["seed"],
                   teacher_acc=lambda job: 70.0 + 10 * job["teacher_seed"])
    for job in jobs.student_jobs(cfg):
        single = job["recipe"] == "soteacher" and job["method"] == "kd"
        if (job["teacher_seed"] == 1 and job["seed"] > 0) or (single and (job["teacher_seed"], job["seed"]) != (0, 0)):
            (tmp_path / jobs.student_metrics(job)).unlink()
    monkeypatch.chdir(tmp_path)
    outputs = aggregate.run(cfg, allow_partial=True)

    table = pd.read_csv(outputs["summary_csv"]).set_index(["recipe", "method", "teacher_epoch"])
    four_runs = table.loc[("standard", "kd", 2)]  # three runs under teacher seed 0, one under seed 1
    assert four_runs["n"] == 4 and four_runs["n_teachers"] == 2
    assert four_runs["teacher_acc"] == pytest.approx((72.0 + 83.0) / 2)  # not (3 × 72 + 83) / 4
    single = table.loc[("soteacher", "kd", 2)]
    assert single["n"] == 1 and pd.isna(single["student_last_std"]) and pd.isna(single["teacher_acc_std"])
    # paired by seed: the one soteacher run (teacher seed 0, seed 0) against the standard run with the same seeds
    # (50.0), not against the mean of all four standard runs (50.75)
    assert single["delta_last_mean"] == pytest.approx(0.0) and single["delta_last_n"] == 1
    assert pd.isna(single["delta_last_low"]) and single["delta_last_verdict"] == "n = 1, no interval"
    md = outputs["summary_md"].read_text()
    single_line = next(line for line in md.splitlines() if "| soteacher | 2 " in line and "| kd " in line)
    assert "±" not in single_line and re.search(r"\|\s*50\.00\s*\|", single_line)
    assert "nan" not in md.lower() and "nan" not in outputs["delta_md"].read_text().lower()


# ---- the declarations: one list, read by the Snakemake rule and the aggregate run -----------------------------------

# one table and one figure more, appended to a copy of the registry: no other edit
FAKE_DECLARATIONS = """
TABLES.append(Table("fake", ("students", "reference_recipe"), "soteacher.report.compare:summarise",
                    (File("fake.csv", CSV),)))
FIGURES.append(Figure(("history",), File("fake.png", "soteacher.report.figures:teacher_curves_figure")))
"""


@pytest.mark.slow
def test_the_rule_declares_and_a_run_writes_exactly_the_declared_files(tmp_path):
    """With a table and a figure declared in a copy of the package: Snakemake's dry run lists as rule aggregate's
    outputs, and the aggregate writes, exactly the declared files, the new ones included."""
    work = copy_workflow(tmp_path)
    package = work / "pipeline_src"  # beside the workflow copy: the package finds the schema there
    shutil.copytree(REPO / "pipeline_src", package, ignore=shutil.ignore_patterns("__pycache__"))
    registry_file = package / "soteacher/report/registry.py"
    registry_file.write_text(registry_file.read_text() + FAKE_DECLARATIONS)
    _write(work, config_mod.load(work / "config/config.yaml", deep=False))

    out = run(["snakemake", "-n", "--cores", "1", "aggregate"], work, PYTHONPATH=str(package))
    job = re.search(r"^rule aggregate:$(.*?)^\s+jobid:", out.stdout + out.stderr, re.M | re.S)
    assert job, out.stdout[-2000:]
    listed = set(re.search(r"^\s+output: (.+)$", job[1], re.M)[1].split(", "))
    run([sys.executable, "-m", "soteacher", "aggregate", "--config", "config/config.yaml"], work,
        PYTHONPATH=str(package))
    written = {p.relative_to(work).as_posix() for folder in (layout.tables_dir("tiny"), layout.figures_dir("tiny"))
               for p in (work / folder).iterdir()}
    declared = {out.path.as_posix() for out in outputs("tiny").values()}
    fake = {f"{layout.tables_dir('tiny')}/fake.csv", f"{layout.figures_dir('tiny')}/fake.png"}
    assert listed == written == declared | fake


def test_declarations_that_cannot_run_are_refused():
    from soteacher.report.declarations import File, Table, check

    def table(name: str, inputs: tuple[str, ...], file: str) -> Table:
        return Table(name, inputs, "soteacher.report.compare:summarise", (File(file, "soteacher.report.tables:csv"),))

    check([table("a", ("students",), "a.csv"), table("b", ("a", "reference_recipe"), "b.csv")], [])
    with pytest.raises(ValueError, match="unknown inputs \\['b'\\]"):  # a later table is not there yet
        check([table("a", ("b",), "a.csv"), table("b", ("students",), "b.csv")], [])
    with pytest.raises(ValueError, match="already"):
        check([table("students", ("config",), "a.csv")], [])
    with pytest.raises(ValueError, match="declared twice"):
        check([table("a", ("students",), "x.csv"), table("b", ("students",), "x.csv")], [])
    with pytest.raises(ValueError, match="no output name"):
        check([table("a", ("students",), "a-b.csv")], [])


@pytest.mark.slow  # a fresh interpreter
def test_the_declarations_import_neither_pandas_nor_matplotlib():
    """Snakemake reads them when it parses the rules."""
    assert python_output("import sys; from soteacher.report import registry; "
                         "registry.rule_outputs(lambda path, **caption: path, 'x'); "
                         "print(sorted({'pandas', 'matplotlib'} & set(sys.modules)))") == "[]"


def test_report_captions_exist_and_every_figure_is_in_the_report():
    import jinja2

    declared = outputs("any")
    for key, out in declared.items():
        if out.caption:
            caption = (REPO / "workflow/report" / out.caption).read_text()
            # Snakemake renders a caption as a Jinja template with the study's config
            shown = jinja2.Template(caption).render(snakemake={"config": {"report": {"reference_recipe": "base"}}})
            assert "{{" not in shown and ("``base``" in shown) == ("{{" in caption), key
            if not key.startswith("ablation"):  # the ablation's own reference line: ablation.py
                assert "standard" not in shown, key
        if out.path.suffix == ".png":
            assert out.caption and out.category == "Figures", key


def test_oracle_headroom_by_hand_pairs_student_seeds_within_teacher_seeds():
    """Oracle − standard KD at the last checkpoint: the oracle run of a student seed stands under every teacher seed;
    the differences are averaged over student seeds within each teacher seed, the interval is over teacher seeds."""
    from scipy import stats as sps

    from soteacher.report.headline import oracle_headroom

    kd = {(1, 1): 70.0, (1, 2): 74.0, (2, 1): 75.0, (2, 2): 77.0}  # (teacher seed, student seed) -> accuracy
    oracle = {1: 80.0, 2: 82.0}
    rows = []
    for (t, s), acc in kd.items():
        for method, value in (("kd", acc), ("oracle", oracle[s]), ("vanilla", 60.0)):
            for epoch in (10, 40):  # the earlier checkpoint must not enter: kd there is 0
                rows.append({"teacher": "resnet14", "recipe": "standard", "teacher_seed": t, "teacher_epoch": epoch,
                             "method": method, "student": "resnet8", "seed": s,
                             "student_last_acc": value if epoch == 40 or method != "kd" else 0.0})
    got = oracle_headroom(pd.DataFrame(rows), "standard", {"recipe": "soteacher", "method": "kd",
                                                           "checkpoint": "last"})
    # per teacher seed: t1 mean(80−70, 82−74) = 9, t2 mean(80−75, 82−77) = 5; mean 7, s = √8, n = 2
    half = sps.t.ppf(0.975, 1) * math.sqrt(8) / math.sqrt(2)
    assert got["checkpoint"] == 40 and got["n"] == 2 and got["mean"] == 7.0
    # summary.json rounds to 4 decimals
    assert got["low"] == pytest.approx(7.0 - half, abs=1e-4) and got["high"] == pytest.approx(7.0 + half, abs=1e-4)
    assert got["verdict"] == "inconclusive"
    assert oracle_headroom(pd.DataFrame(rows).query("method != 'oracle'"), "standard",
                           {"recipe": "soteacher", "method": "kd", "checkpoint": "last"}) is None


def test_sample_size_command_reads_the_primary_pairs_of_a_finished_pilot(tmp_path, monkeypatch, capsys):
    """`python -m soteacher sample-size` on a finished study: soteacher − standard KD students at the last
    checkpoint are GAIN, 1 and 2 under teacher seed 0, 3 and 6 under teacher seed 1. By hand: seed means 1.5 and
    4.5; MS_within = (0.25 + 0.25 + 2.25 + 2.25) / 2 = 2.5; MS_between = 2 · 4.5 = 9; σ_T² = (9 − 2.5) / 2."""
    from soteacher.cli import main

    raw = config_mod.read_yaml(TINY_CONFIG)
    raw["teacher"].update(seeds=[0, 1], epochs=3, checkpoint_every=1)
    raw["distill"].update(seeds=[0, 1], checkpoints=[2, 3])
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, config_mod.load(path, deep=False))
    assert main(["sample-size", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kd students of soteacher minus standard teachers at checkpoint 3" in out
    assert "2 teacher seeds × 2 student seeds, mean difference +3.000 pp" in out
    assert f"σ_T = {math.sqrt(3.25):.3f} pp" in out and f"σ_S = {math.sqrt(2.5):.3f} pp" in out
