"""SoTeacher overhead: time per training epoch, soteacher recipe / standard recipe, same net and data.

Target ≤ 1.10: the Lipschitz penalty is a few fused ops (no module-tree walk per step) and the
consistency buffer's gather/update stay on the device.
"""

from __future__ import annotations

import argparse

import torch

from bench.common import default_optim, default_recipe, random_data, report, timed
from soteacher.models import build_model
from soteacher.teachers.objective import TeacherObjective
from soteacher.training.learner import Learner
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer

OPTIM = default_optim()


def epoch_time(recipe: str, arch: str, data, batch_size: int, epochs: int = 2) -> float:
    torch.manual_seed(0)
    model = build_model(arch, data.num_classes).to(data.train.images.device)
    objective = TeacherObjective(model, default_recipe(recipe), len(data.train), data.num_classes, epochs)
    objective.to(data.train.images.device)
    objective.end_epoch(1)  # measure with the consistency term active
    optimizer, scheduler = make_optimizer(model.parameters(), OPTIM, 0.05, epochs)
    learner = Learner(recipe, model, objective, optimizer, scheduler)
    return timed(lambda: train([learner], data, epochs=1, batch_size=batch_size, seed=0), repeats=epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = random_data(args.samples, 100, args.size, device)
    epoch_time("standard", args.arch, data, args.batch_size, epochs=1)  # warm-up
    standard = epoch_time("standard", args.arch, data, args.batch_size)
    soteacher = epoch_time("soteacher", args.arch, data, args.batch_size)
    print(f"# {args.arch}, {args.samples} samples of {args.size}x{args.size}, batch {args.batch_size}, {device}: "
          f"standard {standard:.2f} s/epoch, soteacher {soteacher:.2f} s/epoch")
    report("soteacher_overhead (soteacher/standard epoch time)", soteacher / standard, "<= 1.10")


if __name__ == "__main__":
    main()
