"""The command line (soteacher.cli): commands that train nothing start without torch."""

from __future__ import annotations

import json

import pytest

from tests.helpers import REPO, TINY_CONFIG, python_output


@pytest.mark.slow
def test_commands_without_training_do_not_import_torch(tmp_path):
    # init-tracking, and the config check Snakemake runs at start-up (the aggregate job's too)
    loaded = python_output(
        "import sys\n"
        "from soteacher.study import config\n"
        "from soteacher.cli import main\n"
        f"main(['init-tracking', '--experiment', 'x', '--tracking-uri', 'sqlite:///{tmp_path}/m.db'])\n"
        f"config.load({str(REPO / 'config/config.yaml')!r}, deep=False)\n"
        "print('torch' in sys.modules)")
    assert loaded.splitlines()[-1] == "False"


def _summary(primary: dict | None, **extra) -> dict:
    return {"study": "tiny", "partial": False, "runs": 34, "primary": primary, "recipes": {}, **extra}


PRIMARY = {"recipe": "soteacher", "reference": "standard", "method": "kd", "checkpoint": 15, "teachers": "resnet8",
           "students": "resnet8", "metric": "student last-epoch test accuracy (pp)", "mean": 1.25, "low": -0.5,
           "high": 3.0, "n": 3, "unit": "teacher seeds", "verdict": "inconclusive"}


def _headline(tmp_path, monkeypatch, capsys, summary: dict) -> str:
    from soteacher.cli import main
    from soteacher.core import layout

    monkeypatch.chdir(tmp_path)
    path = layout.tables_dir("tiny") / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    assert main(["headline", "--config", str(TINY_CONFIG)]) == 0
    return capsys.readouterr().out


def test_headline_prints_the_primary_comparison_and_where_the_tables_are(tmp_path, monkeypatch, capsys):
    out = _headline(tmp_path, monkeypatch, capsys, _summary(PRIMARY))
    assert ("kd students (resnet8) of soteacher teachers minus those of standard teachers at teacher checkpoint 15, "
            "last-epoch test accuracy: +1.25 pp, 95 % interval [-0.50, +3.00] pp, over 3 teacher seeds: "
            "inconclusive.") in out
    assert "oracle" not in out.lower()  # no oracle in this study: nothing said
    from soteacher.core import layout

    assert f"  {layout.tables_dir('tiny') / 'summary.json'}\n" in out
    assert f"make report CONFIG={TINY_CONFIG}" in out and "premise.png" in out and "delta.csv" in out


def test_headline_with_an_oracle_and_without_a_primary(tmp_path, monkeypatch, capsys):
    oracle = {"versus": "standard kd", "checkpoint": 15, "mean": 4.5, "low": 2.0, "high": 7.0, "n": 3,
              "unit": "teacher seeds", "verdict": "better"}
    out = _headline(tmp_path, monkeypatch, capsys, _summary(None, primary_missing="no soteacher",
                                                            oracle_headroom=oracle))
    assert ("Oracle headroom: p*-oracle student minus the standard kd student (checkpoint 15) +4.50 pp, 95 % "
            "interval [+2.00, +7.00], over 3 teacher seeds.") in out


def test_headline_says_why_there_is_no_primary(tmp_path, monkeypatch, capsys):
    out = _headline(tmp_path, monkeypatch, capsys,
                    _summary(None, primary_missing="the study has no recipe 'soteacher'"))
    assert "Primary comparison: none (the study has no recipe 'soteacher')." in out


def test_headline_says_one_teacher_seed_in_the_singular(tmp_path, monkeypatch, capsys):
    oracle = {"versus": "standard kd", "checkpoint": 40, "mean": 2.5, "low": None, "high": None, "n": 1,
              "unit": "teacher seeds", "verdict": "n = 1, no interval"}
    out = _headline(tmp_path, monkeypatch, capsys, _summary(None, primary_missing="no soteacher",
                                                            oracle_headroom=oracle))
    assert "(checkpoint 40) +2.50 pp, over 1 teacher seed." in out


def test_headline_states_the_reference_teachers_regime(tmp_path, monkeypatch, capsys):
    regime = {"resnet14": {"recipe": "standard", "n": 2, "checkpoint": 40, "train_eval_acc": 100.0,
                           "train_ce": 0.00123, "expected_max_pstar_train": 70.84, "tv_train_turn_up": 0.1234,
                           "val_best_test_acc": 67.5, "bayes_test_acc": 72.0, "val_best_gap_to_bayes": -4.5}}
    out = _headline(tmp_path, monkeypatch, capsys, _summary(PRIMARY, regime=regime))
    assert ("Regime of the standard resnet14 teachers (checkpoint 40, mean of 2 teacher seeds): 100.0 % of training "
            "labels fitted (E[max p*] 70.8 %, train CE 0.0012); train TV to p* +0.123 above its minimum; "
            "validation-chosen checkpoint -4.50 pp from the Bayes test accuracy (72.0 %).") in out
    # a study without a validation split has no chosen checkpoint: a dash, not a crash
    regime["resnet14"].update(val_best_test_acc=None, val_best_gap_to_bayes=None)
    (tmp_path / "b").mkdir()
    out = _headline(tmp_path / "b", monkeypatch, capsys, _summary(PRIMARY, regime=regime))
    assert "above its minimum; no validation-chosen checkpoint.\n" in out
