"""The shared training loop: determinism, lockstep students identical to solo runs, loud failures, and the speed
switches (compute.amp / channels_last / compile) working on CPU and changing only what they should."""

from __future__ import annotations

import pytest
import torch

from soteacher.core.errors import NonFiniteLossError
from soteacher.training.evaluation import predict
from soteacher.training.loop import train
from soteacher.training.metrics import accuracy, kl_from, tv_to
from soteacher.training.speed import Speed, prepare_model
from tests.helpers import compute, python_output, soteacher_recipe, student_learner, teacher_learner, tiny_data


def _train_teacher(config, seed):
    data = tiny_data(config)
    learner = teacher_learner(data, soteacher_recipe(), seed)
    train([learner], data, epochs=2, batch_size=16, seed=seed)
    return learner


def test_same_seed_gives_bit_identical_weights_and_metrics(tiny_config):
    a, b = _train_teacher(tiny_config, 0), _train_teacher(tiny_config, 0)
    assert a.history == b.history
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
    tables = [learner.objective.terms["consistency"].average.table for learner in (a, b)]
    assert torch.equal(*tables)


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


def test_each_epoch_reports_every_split_and_the_distance_to_pstar_computed_from_the_model(tiny_config):
    data = tiny_data(tiny_config, val_size=12)
    learner = teacher_learner(data, soteacher_recipe(), 0)
    train([learner], data, epochs=1, batch_size=16, seed=0)
    last = learner.history[-1]
    logits = {split: predict(learner.model, data, split) for split in ("train", "val", "test")}
    for split in ("val", "test"):
        assert last[f"{split}_acc"] == accuracy(logits[split], getattr(data, split).labels)
    assert last["train_eval_acc"] == accuracy(logits["train"], data.train.labels)  # clean, not the running one
    for split in ("train", "val", "test"):
        pstar = getattr(data, split).pstar
        assert last[f"tv_pstar_{split}"] == pytest.approx(tv_to(logits[split], pstar))
        assert last[f"kl_pstar_{split}"] == pytest.approx(kl_from(pstar, logits[split]))
    student_like = teacher_learner(data, soteacher_recipe(), 0)
    train([student_like], data, epochs=1, batch_size=16, seed=0, eval_train_split=False)
    assert "tv_pstar_train" not in student_like.history[-1] and "val_acc" in student_like.history[-1]


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


def test_students_of_several_seeds_in_one_loop_match_each_seed_trained_alone(tiny_config):
    # distill.group_seeds: one job, one batch stream (and teacher forward) per seed, identical numbers
    data = tiny_data(tiny_config)
    teacher = _train_teacher(tiny_config, 0).model
    methods = tiny_config["distill"]["methods"]
    pairs = [("kd", 3), ("fitnet", 3), ("kd", 5)]
    together = [student_learner(data, teacher, m, methods[m], seed=s) for m, s in pairs]
    train(together, data, epochs=2, batch_size=16, seed=[s for _, s in pairs], teacher=teacher)
    for (method, seed), grouped in zip(pairs, together):
        alone = student_learner(data, teacher, method, methods[method], seed=seed)
        train([alone], data, epochs=2, batch_size=16, seed=seed, teacher=teacher)
        assert alone.history == grouped.history, (method, seed)
        for (key, x), (_, y) in zip(alone.model.state_dict().items(), grouped.model.state_dict().items()):
            assert torch.equal(x, y), (method, seed, key)
    assert together[0].history != together[2].history  # the seeds really gave different runs


def test_vanilla_student_trains_the_same_with_any_teacher_or_none(tiny_config):
    from soteacher.models import build_model

    data = tiny_data(tiny_config)
    runs = []
    for teacher_seed in (0, 1, None):  # two different (untrained) teachers, then none at all
        teacher = None
        if teacher_seed is not None:
            torch.manual_seed(teacher_seed)
            teacher = build_model("resnet8", data.num_classes)
        learner = student_learner(data, build_model("resnet8", data.num_classes), "vanilla", {"ce_weight": 1.0}, 0)
        train([learner], data, epochs=1, batch_size=16, seed=0, teacher=teacher)
        runs.append(learner)
    for other in runs[1:]:
        assert other.history[-1]["train_loss"] == runs[0].history[-1]["train_loss"]
        for (key, x), (_, y) in zip(runs[0].model.state_dict().items(), other.model.state_dict().items()):
            assert torch.equal(x, y), key


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
    learner = teacher_learner(data, soteacher_recipe(), 0)
    with torch.no_grad():
        learner.model.fc.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1: .*train_ce=nan"):
        train([learner], data, epochs=1, batch_size=16, seed=0)


def _run(tiny_config, speed: Speed | None = None, **switches):
    data = tiny_data(tiny_config)
    learner = teacher_learner(data, soteacher_recipe(), seed=0)
    prepare_model(learner.model, compute(**switches))
    train([learner], data, epochs=1, batch_size=16, seed=0, speed=speed or Speed())
    return learner


def test_bf16_autocast_trains_with_finite_losses_and_really_changes_the_arithmetic(tiny_config):
    fp32 = _run(tiny_config)
    bf16 = _run(tiny_config, Speed(amp_bf16=True))
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16.history[0].values())
    assert not torch.equal(fp32.model.fc.weight, bf16.model.fc.weight)  # autocast was active
    # the epoch (4 steps at lr 0.05) moves the fc weights by ≤ 0.03; bf16 (8-bit significands, 2^-8 per rounding)
    # keeps them within a few % of that (measured 1e-3). 0.01: a bf16 run that did not train at all fails (the old
    # 0.05 exceeded the whole movement)
    assert torch.allclose(fp32.model.fc.weight, bf16.model.fc.weight, atol=0.01)


def test_channels_last_gives_the_same_training_up_to_float_reordering(tiny_config):
    nchw = _run(tiny_config)
    nhwc = _run(tiny_config, Speed(channels_last=True), channels_last=True)
    assert nhwc.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for (k, a), (_, b) in zip(nchw.model.state_dict().items(), nhwc.model.state_dict().items()):
        # 4 steps of reordered float32 sums over entries up to ~4: a few eps32 · 4 per step, compounding (measured
        # 2.4e-7); 1e-4 leaves it room
        assert torch.allclose(a.float(), b.float(), atol=1e-4), k


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x, with_features: bool = False):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.slow
def test_torch_compile_matches_eager_and_keeps_state_dict_names():
    torch.manual_seed(0)
    eager = TinyNet()
    compiled = prepare_model(TinyNet(), compute(compile=True))
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod. prefix
    x = torch.randn(4, 3, 8, 8)
    for model in (eager, compiled):
        model(x).square().mean().backward()
    # outputs and gradients of magnitude < 1 from reordered float32 sums of ≤ 27 · 64 terms: ~1e-6
    assert torch.allclose(eager(x), compiled(x), atol=1e-5)
    assert torch.allclose(eager.conv.weight.grad, compiled.conv.weight.grad, atol=1e-5)


@pytest.mark.slow
def test_compiling_a_model_carries_determinism_over_to_inductor():
    flags = python_output(
        "import torch\n"
        "from soteacher.core import devices\n"
        "from soteacher.training.speed import prepare_model\n"
        "from tests.helpers import compute\n"
        "devices.setup(compute(threads=1, deterministic=True, device='cpu'))\n"
        "prepare_model(torch.nn.Linear(2, 2), compute(compile=True))\n"
        "import torch._inductor.config as c\n"
        "print(c.deterministic)")
    assert flags == "True"
