"""The shared training loop: determinism, lockstep students identical to solo runs, loud failures."""

from __future__ import annotations

import pytest
import torch

from soteacher.teacher_side.loop import NonFiniteLossError, predict, train
from soteacher.teacher_side.metrics import accuracy, kl_from, tv_to
from tests.helpers import soteacher_recipe, student_learner, teacher_learner, tiny_data


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
    from soteacher.teacher_side.models import build_model

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


def test_synthetic_data_depend_on_the_seed_only(tiny_config):
    from soteacher.teacher_side.data.synthetic import generate

    cfg = tiny_config["data"]["synthetic"]
    torch.manual_seed(123)
    a = generate(cfg)
    torch.manual_seed(456)  # the global RNG must not matter
    b = generate(cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = generate({**cfg, "seed": cfg["seed"] + 1})
    assert not torch.equal(a["train_images"], c["train_images"])


def _rows(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


def test_synthetic_val_split_is_a_third_draw_that_leaves_train_and_test_unchanged(tiny_config):
    from soteacher.teacher_side.data.synthetic import generate

    cfg = tiny_config["data"]["synthetic"]
    plain, with_val = generate(cfg), generate(cfg, val_size=12)
    assert set(with_val) - set(plain) == {"val_images", "val_labels", "val_pstar"}
    assert all(torch.equal(plain[k], with_val[k]) for k in plain)  # train and test byte for byte
    assert with_val["val_images"].shape == (12, *plain["train_images"].shape[1:])
    assert with_val["val_pstar"].shape == (12, cfg["num_classes"])
    assert not _rows(with_val["val_images"]) & (_rows(plain["train_images"]) | _rows(plain["test_images"]))
    assert torch.equal(generate(cfg, val_size=12)["val_images"], with_val["val_images"])


def test_synthetic_prepare_and_load_the_val_split(tiny_config, tmp_path):
    from soteacher.teacher_side import data as data_mod
    from soteacher.teacher_side.data import DataError

    data_cfg = {**tiny_config["data"], "val_size": 10}
    manifest = data_mod.prepare(data_cfg, tmp_path)
    assert {s: manifest["splits"][s]["samples"] for s in ("train", "test", "val")} == {"train": 64, "test": 32,
                                                                                       "val": 10}
    for key in ("bayes_acc", "expected_max_pstar"):
        assert set(manifest["reference"][key]) == {"train", "test", "val"}
        assert all(0 < v <= 100 for v in manifest["reference"][key].values())
    data = data_mod.load(data_cfg, tmp_path, torch.device("cpu"))
    assert len(data.val) == 10 and data.val.pstar.shape == (10, 4)
    from soteacher.teacher_side.data.synthetic import bayes_reference

    ref = bayes_reference(data.val.pstar, data.val.labels)
    assert {k: manifest["reference"][k]["val"] for k in ref} == ref
    plain_cfg = {**data_cfg, "val_size": 0}
    plain_manifest = data_mod.prepare(plain_cfg, tmp_path / "plain")
    assert "val" not in plain_manifest["splits"] and set(plain_manifest["reference"]["bayes_acc"]) == {"train", "test"}
    plain = data_mod.load(plain_cfg, tmp_path / "plain", torch.device("cpu"))
    assert plain.val is None
    # the val split changes neither train nor the normalisation (computed from train only)
    assert torch.equal(plain.train.images, data.train.images) and torch.equal(plain.mean, data.mean)
    with pytest.raises(DataError, match=r"has 10 validation samples, data.val_size is 3"):
        data_mod.load({**data_cfg, "val_size": 3}, tmp_path, torch.device("cpu"))


def test_bayes_reference_by_hand():
    from soteacher.teacher_side.data.synthetic import bayes_reference

    pstar = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    labels = torch.tensor([0, 1, 1])  # argmax p* = 0, 2, 1: right, wrong, right
    ref = bayes_reference(pstar, labels)
    assert ref["bayes_acc"] == pytest.approx(100 * 2 / 3)
    assert ref["expected_max_pstar"] == pytest.approx(100 * (0.7 + 0.6 + 0.5) / 3)


class _TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(6, 5)
        self.late = torch.nn.Linear(5, 3)  # reached only from step 3: its momentum buffer starts later

    def forward(self, x, step):
        h = torch.relu(self.body(x))
        return self.late(h).sum() if step >= 3 else h.sum()


def _optimise(make, steps: int, model: torch.nn.Module, state: dict | None = None, start: int = 0):
    opt, sched = make(model)
    if state is not None:
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
    lrs = []
    for step in range(start, steps):
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(step)).to(next(model.parameters()).device)
        opt.zero_grad(set_to_none=True)
        model(x, step).square().backward()
        opt.step()
        if step % 2 == 1:  # an "epoch" is two steps
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs, {"opt": opt.state_dict(), "sched": sched.state_dict()}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_sgd_and_multistep_schedule_match_torch_optim_bit_for_bit(device):
    from soteacher.teacher_side.optim import SGD, MultiStepLR

    def ours(model):
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return opt, MultiStepLR(opt, [1, 2, 2], 0.1)

    def reference(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return opt, torch.optim.lr_scheduler.MultiStepLR(opt, [1, 2, 2], 0.1)

    torch.manual_seed(0)
    a = _TwoHeads().to(device)
    b, c = _TwoHeads().to(device), _TwoHeads().to(device)
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    ours_lrs, _ = _optimise(ours, 8, a)
    ref_lrs, _ = _optimise(reference, 8, b)
    assert ours_lrs == ref_lrs and ref_lrs[-1] != 0.05
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), key
    # resuming from a saved state continues exactly
    _, state = _optimise(ours, 4, c)
    resumed_lrs, _ = _optimise(ours, 8, c, state, start=4)
    assert resumed_lrs == ours_lrs[4:]
    for (key, x), (_, y) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(x, y), key


def test_init_stage_runs_at_the_methods_init_lr_or_the_students(tiny_config, tmp_path):
    """FT's paraphraser trains at ft.init_lr (RepDistiller: 0.01 for CIFAR ResNet/WRN students); FSP has no
    init_lr and uses the student's lr."""
    from soteacher.common.config import validate
    from soteacher.student_side import distill_job
    from tests.helpers import OPTIM

    data = tiny_data(tiny_config)
    teacher = teacher_learner(data, tiny_config["teacher"]["recipes"]["standard"], 0).model.eval()
    filled = validate({"distill": {"methods": {"ft": {}, "fsp": {}}}}, deep=False)["distill"]["methods"]
    assert filled["ft"]["init_lr"] == 0.01 and "init_lr" not in filled["fsp"]
    learners = [student_learner(data, teacher, name, {**filled[name], "init_epochs": 1}, 0) for name in ("ft", "fsp")]
    spec = {"optim": OPTIM, "student": "resnet8", "data": {"augment": True}, "compute": {"resume_every": 0}}
    histories = distill_job.init_stage(learners, [lr.objective for lr in learners], [0, 0], spec, data, teacher,
                                       lambda *args: None, tmp_path)
    assert [h["lr"] for h in histories["ft"]] == [0.01]
    assert [h["lr"] for h in histories["fsp"]] == [OPTIM["lr"]]


@pytest.mark.parametrize("compute", [{"amp": "bf16"}, {"channels_last": True}, {}])
def test_the_speed_switches_reach_the_init_stage(tiny_config, tmp_path, compute):
    """compute.amp and compute.channels_last apply to a staged method's init epochs as to distillation: the
    student sees channels-last inputs and runs under bf16 autocast in its init-stage forward passes."""
    from soteacher.common.config import validate
    from soteacher.student_side import distill_job
    from tests.helpers import OPTIM

    data = tiny_data(tiny_config)
    teacher = teacher_learner(data, tiny_config["teacher"]["recipes"]["standard"], 0).model.eval()
    cfg = {**validate({"distill": {"methods": {"ab": {}}}}, deep=False)["distill"]["methods"]["ab"], "init_epochs": 1}
    [learner] = [student_learner(data, teacher, "ab", cfg, 0)]
    seen = []

    def record(_module, args):
        if _module.training:  # the init stage's steps, not its evaluation
            x = args[0]
            seen.append((x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                         torch.is_autocast_enabled("cpu")))

    learner.model.register_forward_pre_hook(record)
    spec = {"optim": OPTIM, "student": "resnet8", "data": {"augment": True},
            "compute": {"resume_every": 0, "amp": None, "channels_last": False, **compute}}
    distill_job.init_stage([learner], [learner.objective], [0], spec, data, teacher, lambda *args: None, tmp_path)
    assert seen and set(seen) == {(compute.get("channels_last", False), compute.get("amp") == "bf16")}
