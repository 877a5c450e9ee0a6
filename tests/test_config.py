"""Config validation: defaults, and every malformed config refused with a message naming its key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from soteacher.data import DATASETS
from soteacher.study import config as config_mod
from soteacher.study import student_jobs as jobs
from soteacher.study import teacher_jobs
from tests.helpers import REPO, TINY_CONFIG

BAD_CONFIGS = [
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"teacher": {"epochs": -1}}, "teacher.epochs"),
    ({"teacher": {"epochs": 0}}, "teacher.epochs"),
    ({"teacher": {"epochs": "ten"}}, "teacher.epochs: expected integer"),
    ({"teacher": {"archs": ["resnet9"]}}, "teacher.archs[0]: unknown architecture 'resnet9'"),
    ({"teacher": {"archs": []}}, "teacher.archs"),
    ({"teacher": {"archs": ["../etc"]}}, "teacher.archs[0]"),
    ({"teacher": {"seeds": [-1]}}, "teacher.seeds[0]"),
    ({"teacher": {"checkpoint_every": 20, "epochs": 10}}, "teacher.checkpoint_every"),
    ({"teacher": {"recipes": {"Bad-Name": {"ce": {}}}}}, "teacher.recipes"),
    ({"teacher": {"recipes": {"empty": {}}}}, "config key teacher.recipes.empty"),  # no term: no loss
    ({"teacher": {"recipes": {"soteacher": {"lipschitz": {"weight": -1}}}}},
     "teacher.recipes.soteacher.lipschitz.weight"),
    ({"teacher": {"recipes": {"soteacher": {"consistency": {"schedule": "exp"}}}}},
     "teacher.recipes.soteacher.consistency.schedule"),
    ({"teacher": {"recipes": {"soteacher": {"lipschitz": 1}}}}, "teacher.recipes.soteacher.lipschitz: expected object"),
    ({"teacher": {"recipes": {"soteacher": {"lambda_lr": 1e-5}}}}, "unknown key 'teacher.recipes.soteacher.lambda_lr'"),
    ({"teacher": {"recipes": {"ls": {"label_smoothing": {"epsilon": 1.5}}}}},
     "teacher.recipes.ls.label_smoothing.epsilon"),
    ({"teacher": {"optim": {"lr": 0}}}, "teacher.optim.lr"),
    ({"teacher": {"optim": {"lr_milestones": [5, 3]}}}, "teacher.optim.lr_milestones"),
    ({"teacher": {"optim": {"batch_size": 1}}}, "teacher.optim.batch_size"),
    ({"distill": {"methods": {"kdd": {}}}}, "unknown key 'distill.methods.kdd'"),
    ({"distill": {"methods": {}}}, "distill.methods"),
    ({"distill": {"methods": {"kd": {"kd_temperature": 0}}}}, "distill.methods.kd.kd_temperature"),
    ({"distill": {"methods": {"fitnet": {"hint_layer": 9}}}}, "distill.methods.fitnet"),
    ({"distill": {"students": ["resnet8; rm -rf /"]}}, "distill.students[0]"),
    ({"distill": {"checkpoints": [7]}}, "distill.checkpoints"),
    ({"distill": {"checkpoints": "first"}}, "distill.checkpoints"),
    ({"distill": {"seeds": []}}, "distill.seeds"),
    ({"data": {"dataset": "mnist"}}, "data.dataset: 'mnist' is not allowed"),
    ({"data": {"synthetic": {"features_per_image": 99}}}, "data.synthetic.features_per_image"),
    ({"compute": {"device": "tpu"}}, "compute.device"),
    ({"name": "my study"}, "name"),
    ({"tracking": {"uri": 5}}, "tracking.uri"),
]


@pytest.mark.parametrize("overrides, expected", BAD_CONFIGS, ids=[e for _, e in BAD_CONFIGS])
def test_malformed_config_is_refused_naming_the_key(overrides, expected):
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(overrides)
    assert expected in str(err.value)


def test_defaults_are_filled_and_default_config_is_valid():
    cfg = config_mod.validate({})
    assert cfg["teacher"]["recipes"] == {
        "standard": {"ce": {}},
        "soteacher": {"ce": {}, "lipschitz": {"weight": 1e-5, "bound": "l1"},
                      "consistency": {"weight": 1.0, "schedule": "linear", "start_epoch": 1}}}
    assert cfg["distill"]["methods"]["kd"]["kd_temperature"] == 4.0
    config_mod.load(REPO / "config" / "config.yaml")


def test_yaml_syntax_error_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nteacher:\n  epochs: [1,\n")
    with pytest.raises(config_mod.ConfigError, match=r"bad\.yaml:\d+:\d+: YAML syntax error"):
        config_mod.load(path)


def test_grid_counts(tiny_config):
    assert len(teacher_jobs.teacher_jobs(tiny_config)) == 2
    # 2 recipes x 2 checkpoints x 1 student x 1 seed groups, 2 methods each
    assert len(jobs.student_groups(tiny_config)) == 4
    assert len(jobs.student_jobs(tiny_config)) == 8


@pytest.mark.slow
def test_cli_check_config_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "soteacher", "check-config", str(TINY_CONFIG)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "2 teacher runs, 8 student runs" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"teacher": {"epochs": -3}}))
    out = subprocess.run([sys.executable, "-m", "soteacher", "check-config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "teacher.epochs: -3 is less than the minimum of 1" in out.stderr
    assert "Traceback" not in out.stderr


def test_dataset_choices_are_the_registry():
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate({"data": {"dataset": "mnist"}})
    assert f"data.dataset: 'mnist' is not allowed; allowed: {', '.join(DATASETS)}" in str(err.value)
    assert list(DATASETS) == ["synthetic", "cifar100", "tiny_imagenet", "fashion_mnist", "imagenet"]


@pytest.mark.slow
def test_config_checks_do_not_import_torch():
    """Snakemake's start-up and the aggregate job check configs; the registries they read need no torch."""
    code = ("import sys; from soteacher.study import config; "
            "cfg = config.load(sys.argv[1], deep=False); config.input_shape(cfg); "
            "from soteacher.models import MODELS; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(MODELS))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "config" / "fashion_mnist.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("yaml_text", "key"), [
    ("teacher: {recipes: {soteacher: {consistency: {weight: .nan}}}}",
     "teacher.recipes.soteacher.consistency.weight: nan"),
    ("teacher: {recipes: {soteacher: {lipschitz: {weight: .inf}}}}", "teacher.recipes.soteacher.lipschitz.weight: inf"),
    ("distill: {methods: {kd: {kd_temperature: -.inf}}}", "distill.methods.kd.kd_temperature: -inf"),
    ("teacher: {optim: {lr: .nan}}", "teacher.optim.lr: nan"),
])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, yaml_text, key):
    path = tmp_path / "study.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(path)
    assert f"config key {key} is not a finite number" in str(err.value)


def test_settings_that_never_take_effect_are_named(caplog):
    raw = {"teacher": {"epochs": 10, "checkpoint_every": 5, "optim": {"lr_milestones": [5, 10, 12]},
                       "recipes": {"late": {"ce": {}, "consistency": {"schedule": "step", "start_epoch": 10}},
                                   "fine": {"ce": {}, "consistency": {"schedule": "step", "start_epoch": 9}}}},
           "distill": {"epochs": 4, "optim": {"lr_milestones": [3]}, "methods": {"crd": {"nce_k": 5000}}},
           "data": {"synthetic": {"train_size": 1000}}}
    with caplog.at_level("WARNING", logger="soteacher.study.config"):
        config_mod.validate(raw)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "config key teacher.optim.lr_milestones: [10, 12] at or beyond teacher.epochs=10 never decay the lr "
        "(the decays that happen: [5])",
        "config key teacher.recipes.late.consistency.start_epoch: 10 is not before teacher.epochs=10: with schedule "
        "step the consistency term never switches on (λ_CR stays 0)",
        "config key distill.methods.crd.nce_k: 5000 exceeds the 1000 training samples: an anchor's negatives "
        "repeat samples (at most 1000 distinct)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="soteacher.study.config"):
        config_mod.validate(raw, deep=False)  # the jobs' own checks stay quiet: Snakemake's start-up said it
        config_mod.validate({})
    assert caplog.records == []


def test_lr_milestones_with_the_cosine_schedule_are_named(caplog):
    raw = {"teacher": {"epochs": 10, "checkpoint_every": 5, "optim": {"lr_schedule": "cosine"}},
           "distill": {"epochs": 4, "optim": {"lr_schedule": "cosine", "lr_milestones": [3, 6]}}}
    with caplog.at_level("WARNING", logger="soteacher.study.config"):
        config_mod.validate(raw)
    assert [r.getMessage() for r in caplog.records] == [
        "config key distill.optim.lr_milestones: [3, 6] are not used with distill.optim.lr_schedule cosine (the lr "
        "follows the cosine alone)"]


@pytest.mark.slow
def test_check_config_prints_the_warnings(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "study.yaml"
    path.write_text("teacher: {epochs: 4, checkpoint_every: 2, optim: {lr_milestones: [4]}}\n")
    out = subprocess.run([sys.executable, "-m", "soteacher", "check-config", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout
    assert "teacher.optim.lr_milestones: [4] at or beyond teacher.epochs=4" in out.stderr
