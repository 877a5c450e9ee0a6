"""Train tiny learners as one process or as the ranks torchrun started, and save what each rank ends with.

``python -m tests.ranks_driver OUT SCENARIO [KILL_AT_STEP [SIGNAL]]``, alone or under
``python -m torch.distributed.run --standalone --nproc-per-node 2 -m tests.ranks_driver ...`` with
``SOTEACHER_RANKS=torchrun``. Scenarios: ``teacher`` (the SoTeacher objective: consistency buffer and Lipschitz
penalty, and Filter-KD's table recorded), ``students`` (KD, SP and CRD students of one frozen teacher in lockstep),
``*-bn`` the same networks with their BatchNorm layers (without: ``nn.Identity`` in their place, so one process and
the ranks compute the same function of the same samples). The batch (13 of 64 samples) does not divide by 2, nor
does the last batch's size.
Each rank writes OUT/rank<r>.pt; with KILL_AT_STEP rank 1 sends itself SIGNAL at that step (resume: OUT/state.pt).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from soteacher.core import ranks
from soteacher.core.errors import TrainingInterrupted
from soteacher.methods import METHODS
from soteacher.models import build_model, feature_shapes
from soteacher.study import config
from soteacher.teachers.objective import TeacherObjective
from soteacher.training.learner import Learner
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer
from soteacher.training.state import Resume, seed_everything
from tests.helpers import OPTIM, TINY_CONFIG, compute, filter_table, soteacher_recipe, tiny_data

BATCH = 13
EPOCHS = 3
# KD, and every method whose loss relates the samples of a batch (CRD: its memory bank and negatives)
STUDENT_METHODS = {"kd": {}, "sp": {}, "crd": {"nce_k": 16, "feat_dim": 8}, "cc": {}, "rkd": {}, "pkt": {}, "dist": {}}
STUDENT_LR = 0.001  # without BatchNorm, DIST and PKT are chaotic at 0.01 (float noise grows to 0.1 in 3 epochs)


def without_batchnorm(model: nn.Module) -> nn.Module:
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
    return model


def network(arch: str, classes: int, bn: bool, seed: int) -> nn.Module:
    seed_everything(seed)
    model = build_model(arch, classes)
    return model if bn else without_batchnorm(model)


def method_cfg(name: str) -> dict:
    return config.validate({"distill": {"methods": {name: STUDENT_METHODS[name]}}}, deep=False)["distill"][
        "methods"][name]


def main() -> int:
    out, scenario = Path(sys.argv[1]), sys.argv[2]
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    sig = getattr(signal, sys.argv[4]) if len(sys.argv) > 4 else signal.SIGTERM
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    found = ranks.environment()
    size = 1 if found is None else found[1]
    world = ranks.start(compute(gpus_per_job=size, threads=1), torch.device("cpu"))
    bn = scenario.endswith("-bn")
    data = tiny_data(config.load(TINY_CONFIG))
    classes = data.num_classes
    # the first epoch's batches as this rank sees them
    batches = [(x, y, idx) for x, y, idx in data.train_batches(BATCH, torch.Generator().manual_seed(0), True, world)]
    teacher = None
    if scenario.startswith("teacher"):
        model = network("resnet8", classes, bn, seed=0)
        recipe = soteacher_recipe(consistency={"schedule": "step", "start_epoch": 1})
        objective = TeacherObjective(model, recipe, len(data.train), classes, EPOCHS, world,
                                     filter_table=filter_table())
        learners = [Learner("teacher", model, objective, *make_optimizer(model.parameters(), OPTIM, OPTIM.lr, EPOCHS))]
    else:
        teacher = network("resnet8", classes, bn, seed=1).eval()
        learners = []
        for name in STUDENT_METHODS:
            student = network("resnet8", classes, bn, seed=2)
            method = METHODS[name](method_cfg(name), feature_shapes(student, data.image_shape),
                                   feature_shapes(teacher, data.image_shape), len(data.train), world)
            params = list(student.parameters()) + list(method.parameters())
            learners.append(Learner(name, student, method, *make_optimizer(params, OPTIM, STUDENT_LR, EPOCHS)))
    steps = [0]
    forward = learners[0].objective.forward

    def counting_forward(*args, **kwargs):
        steps[0] += 1
        if steps[0] == kill_at and world.rank == world.size - 1:
            os.kill(os.getpid(), sig)
        return forward(*args, **kwargs)

    learners[0].objective.forward = counting_forward
    resume = Resume(out / "state.pt", every=1) if kill_at >= 0 or (out / "state.pt").exists() else None
    try:
        # compute.sync_bn with BatchNorm: on CPU it warns and leaves per-shard statistics (test_ranks checks those)
        train(learners, data, epochs=EPOCHS, batch_size=BATCH, seed=0, teacher=teacher, resume=resume, world=world,
              sync_bn=bn)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return 143
    finally:
        ranks.stop(world)
    torch.save({
        "world": world.size,
        "batches": batches,
        "learners": {lr.name: {"model": lr.model.state_dict(), "objective": lr.objective.state_dict(),
                               "history": lr.history} for lr in learners},
    }, out / f"rank{world.rank}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
