"""Absolute speed of the CIFAR-100 recipe: one epoch (50,000 images, batch 64) of a resnet32x4 SoTeacher
teacher and of a resnet8x4 KD student distilled from it, timed over ``--steps`` steps on synthetic tensors
of CIFAR shape, extrapolated to 240 epochs. Targets on one H100: teacher ≤ 15 min, student ≤ 8 min.

Runs anywhere; on a CPU use a few steps (it is slow there) — the figure that matters is the GPU one.
"""

from __future__ import annotations

import argparse

import torch

from bench.common import default_recipe, kd_defaults, random_data, timed
from soteacher.student_side.methods import METHODS
from soteacher.teacher_side.loop import Learner, Speed, make_optimizer, prepare_model, train
from soteacher.teacher_side.models import build_model, feature_shapes
from soteacher.teacher_side.objective import TeacherObjective

OPTIM = {"momentum": 0.9, "weight_decay": 5e-4, "lr_milestones": [], "lr_gamma": 0.1}
CIFAR_TRAIN, EPOCHS = 50_000, 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--amp", choices=["none", "bf16"], default="bf16")
    parser.add_argument("--channels-last", action="store_true", default=True)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compute = {"amp": args.amp, "channels_last": args.channels_last, "compile": args.compile}
    speed = Speed.from_compute(compute)
    n = args.batch_size * args.steps
    data = random_data(n, 100, 32, device)
    warm = random_data(args.batch_size * max(2, args.warmup), 100, 32, device)
    steps_per_epoch = CIFAR_TRAIN // args.batch_size + 1

    torch.manual_seed(0)
    teacher = prepare_model(build_model("resnet32x4", 100).to(device), compute)
    objective = TeacherObjective(teacher, default_recipe("soteacher"), CIFAR_TRAIN, 100, EPOCHS).to(device)
    objective.end_epoch(1)
    opt, sched = make_optimizer(teacher.parameters(), OPTIM, 0.05)
    learner = Learner("teacher", teacher, objective, opt, sched)
    # the evaluation pass is excluded: time the training steps only
    run = lambda d: train([learner], d, epochs=1, batch_size=args.batch_size, seed=0, speed=speed,  # noqa: E731
                          on_epoch_end=None)
    import soteacher.teacher_side.loop as train_mod

    evaluate, train_mod.evaluate = train_mod.evaluate, lambda model, data: {}
    try:
        run(warm)
        t_teacher = timed(lambda: run(data)) / args.steps

        student = prepare_model(build_model("resnet8x4", 100).to(device), compute)
        method = METHODS["kd"](kd_defaults(), feature_shapes(student, (3, 32, 32)),
                               feature_shapes(teacher, (3, 32, 32)), CIFAR_TRAIN).to(device)
        opt, sched = make_optimizer(list(student.parameters()) + list(method.parameters()), OPTIM, 0.05)
        s_learner = Learner("student", student, method, opt, sched)
        run_s = lambda d: train([s_learner], d, epochs=1, batch_size=args.batch_size, seed=0,  # noqa: E731
                                teacher=teacher, speed=speed)
        run_s(warm)
        t_student = timed(lambda: run_s(data)) / args.steps
    finally:
        train_mod.evaluate = evaluate
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    print(f"# {name}, batch {args.batch_size}, amp={args.amp}, channels_last={args.channels_last}, "
          f"compile={args.compile}, {args.steps} timed steps")
    for who, per_step, target in (("teacher resnet32x4 (soteacher)", t_teacher, 15),
                                  ("student resnet8x4 (KD)", t_student, 8)):
        epoch = per_step * steps_per_epoch
        print(f"{who}: {per_step * 1000:.1f} ms/step, {epoch:.1f} s/epoch, {EPOCHS} epochs = "
              f"{epoch * EPOCHS / 60:.1f} min (target <= {target} min on one H100)")


if __name__ == "__main__":
    main()
