"""The shared training loop: determinism, lockstep students identical to solo runs, loud failures."""

from __future__ import annotations

import pytest
import torch

from soteacher.train import NonFiniteLossError, train
from tests.helpers import student_learner, teacher_learner, tiny_data

SOTEACHER = {"lambda_lr": 1e-5, "lipschitz_bound": "l1", "lambda_cr": 1.0, "cr_schedule": "linear",
             "cr_start_epoch": 1}


def _train_teacher(config, seed):
    data = tiny_data(config)
    learner = teacher_learner(data, SOTEACHER, seed)
    train([learner], data, epochs=2, batch_size=16, seed=seed)
    return learner


def test_same_seed_gives_bit_identical_weights_and_metrics(tiny_config):
    a, b = _train_teacher(tiny_config, 0), _train_teacher(tiny_config, 0)
    assert a.history == b.history
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
    assert torch.equal(a.objective.ensemble.targets, b.objective.ensemble.targets)


def test_different_seed_gives_different_weights(tiny_config):
    a, b = _train_teacher(tiny_config, 0), _train_teacher(tiny_config, 1)
    assert not torch.equal(a.model.fc.weight, b.model.fc.weight)


def test_history_has_every_loss_term_and_metric(tiny_config):
    history = _train_teacher(tiny_config, 0).history
    assert [h["epoch"] for h in history] == [1, 2]
    for key in ("train_loss", "train_ce", "train_lipschitz", "train_consistency", "train_acc", "test_acc",
                "tv_pstar_train", "tv_pstar_test", "lr"):
        assert key in history[-1]
    assert history[0]["train_consistency"] == 0.0  # first epoch only fills the buffer
    assert history[1]["train_consistency"] > 0.0


def test_students_in_lockstep_match_students_trained_alone(tiny_config):
    data = tiny_data(tiny_config)
    teacher = _train_teacher(tiny_config, 0).model
    methods = tiny_config["distill"]["methods"]

    def run(names):
        learners = [student_learner(data, teacher, m, methods[m], seed=3) for m in names]
        train(learners, data, epochs=2, batch_size=16, seed=3, teacher=teacher)
        return {lr.name: lr for lr in learners}

    together = run(["kd", "fitnet"])
    for name in ("kd", "fitnet"):
        alone = run([name])[name]
        assert alone.history == together[name].history
        for (key, x), (_, y) in zip(alone.model.state_dict().items(), together[name].model.state_dict().items()):
            assert torch.equal(x, y), (name, key)
        for (key, x), (_, y) in zip(alone.objective.state_dict().items(),
                                    together[name].objective.state_dict().items()):
            assert torch.equal(x, y), (name, key)


def test_teacher_is_frozen_during_distillation(tiny_config):
    data = tiny_data(tiny_config)
    teacher = _train_teacher(tiny_config, 0).model
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    learner = student_learner(data, teacher, "fitnet", tiny_config["distill"]["methods"]["fitnet"], seed=0)
    train([learner], data, epochs=1, batch_size=16, seed=0, teacher=teacher)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN running stats included: teacher stays in eval mode


def test_non_finite_loss_stops_with_epoch_and_terms(tiny_config):
    data = tiny_data(tiny_config)
    learner = teacher_learner(data, SOTEACHER, 0)
    with torch.no_grad():
        learner.model.fc.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1: .*train_ce=nan"):
        train([learner], data, epochs=1, batch_size=16, seed=0)


def test_synthetic_data_depend_on_the_seed_only(tiny_config):
    from soteacher.data.synthetic import generate

    cfg = tiny_config["data"]["synthetic"]
    torch.manual_seed(123)
    a = generate(cfg)
    torch.manual_seed(456)  # the global RNG must not matter
    b = generate(cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = generate({**cfg, "seed": cfg["seed"] + 1})
    assert not torch.equal(a["train_images"], c["train_images"])
