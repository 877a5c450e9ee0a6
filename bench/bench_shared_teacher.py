"""Shared teacher forward: M students of one teacher checkpoint trained in lockstep (one teacher forward
per batch) vs. M separate runs, same shapes as resnet32x4 -> resnet8x4. Reports students/hour ratio.

Target ≥ 2x for M = 4 (on a 2-core CPU the ceiling is lower: see DESIGN notes, ~2.0x at most).
"""

from __future__ import annotations

import argparse

import torch

from bench.common import default_optim, kd_defaults, random_data, report, timed
from soteacher.methods import METHODS
from soteacher.models import build_model, feature_shapes
from soteacher.training.learner import Learner
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer

OPTIM = default_optim()


def make_student(arch: str, teacher, data) -> Learner:
    torch.manual_seed(0)
    device = data.train.images.device
    model = build_model(arch, data.num_classes).to(device)
    shape = data.image_shape
    method = METHODS["kd"](kd_defaults(), feature_shapes(model, shape), feature_shapes(teacher, shape),
                           len(data.train)).to(device)
    optimizer, scheduler = make_optimizer(list(model.parameters()) + list(method.parameters()), OPTIM, 0.05, 1)
    return Learner("kd", model, method, optimizer, scheduler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings of each")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = random_data(args.samples, 100, args.size, device)
    teacher = build_model(args.teacher, 100).to(device).eval()

    def separate() -> None:
        for _ in range(args.students):
            train([make_student(args.student, teacher, data)], data, epochs=1, batch_size=args.batch_size,
                  seed=0, teacher=teacher)

    def lockstep() -> None:
        learners = [make_student(args.student, teacher, data) for _ in range(args.students)]
        train(learners, data, epochs=1, batch_size=args.batch_size, seed=0, teacher=teacher)

    # untimed warm-up: lazy initialisation (allocator, kernels) would otherwise be charged to the first timing
    train([make_student(args.student, teacher, data)], data, epochs=1, batch_size=args.batch_size, seed=0,
          teacher=teacher)
    def teacher_forwards() -> None:  # what lockstep saves: the teacher's forward on the epoch's batches
        with torch.no_grad():
            for x, _, _ in data.train_batches(args.batch_size, torch.Generator(device=device).manual_seed(0)):
                teacher(x)

    t_separate = timed(separate, args.repeats)
    t_lockstep = timed(lockstep, args.repeats)
    t_teacher = timed(teacher_forwards, args.repeats)
    # separate = M (T + S), lockstep = T + M S at best: the ceiling this machine's T/S allows
    m = args.students
    t_student = t_separate / m - t_teacher
    print(f"# {args.teacher} -> {args.student} x{m}, {args.samples} samples of {args.size}px, {device}: "
          f"separate {t_separate:.1f} s, lockstep {t_lockstep:.1f} s (the separate runs exclude process start-up); "
          f"teacher forwards {t_teacher:.1f} s per epoch, so at most {t_separate / (t_teacher + m * t_student):.2f}x "
          "here")
    report(f"shared_teacher_forward (students/hour, M={args.students} lockstep / separate)",
           t_separate / t_lockstep, ">= 2.0")


if __name__ == "__main__":
    main()
