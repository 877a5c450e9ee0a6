"""Absolute speed of the CIFAR-100 recipe: one epoch (50,000 images, batch 64) of a resnet32x4 SoTeacher
teacher and of a resnet8x4 KD student distilled from it, timed over ``--steps`` steps on synthetic tensors
of CIFAR shape, extrapolated to 240 epochs. Targets on one H100: teacher ≤ 15 min, student ≤ 8 min.

``--gpus N`` (N > 1) times the same steps as N ranks, one card each (NCCL), against 1 card in the same run: weak
scaling, every rank trains on ``--batch-size`` samples, so the global batch is 64·N and an epoch has 1/N of the
steps; it prints the per-step time, the whole job's 240 epochs extrapolated, and the scaling efficiency (1-card step
time / N-card step time). Both run as subprocesses of this module, launched as ``bench.bench_ranks`` launches its
workers (torchrun for the ranks). Without a GPU, N means N CPU ranks (gloo): a smoke check of the launch.

Only training steps are timed (after ``--warmup`` untimed ones; no evaluation, no epoch end). Runs anywhere; on a
CPU use a few steps (it is slow there) — the figure that matters is the GPU one.
"""

from __future__ import annotations

import argparse

import torch

from bench.bench_ranks import cores, cpu_caveat, device_label, emit, join, launch, time_steps
from bench.common import default_compute, default_optim, default_recipe, kd_defaults, random_data
from soteacher.core import ranks
from soteacher.core.ranks import World
from soteacher.methods import METHODS
from soteacher.models import build_model, feature_shapes
from soteacher.teachers.objective import TeacherObjective
from soteacher.training.learner import Learner
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer
from soteacher.training.speed import Speed, prepare_model

OPTIM = default_optim()
CIFAR_TRAIN, EPOCHS = 50_000, 240
MODELS = (("teacher", "teacher resnet32x4 (soteacher)", 15), ("student", "student resnet8x4 (KD)", 8))


def steps_per_epoch(global_batch: int) -> int:
    return -(-CIFAR_TRAIN // global_batch)


def measure(args: argparse.Namespace, device: torch.device, world: World) -> dict:
    """Seconds per training step of the teacher and of the student, on this rank (global batch: per-rank × ranks)."""
    compute = default_compute(amp=args.amp, channels_last=args.channels_last, compile=args.compile)
    speed = Speed.from_compute(compute)
    batch = args.batch_size * world.size
    n = batch * (args.warmup + args.steps)
    data = random_data(n, 100, 32, device)
    samples = max(CIFAR_TRAIN, n)  # the consistency buffer of the real data set (and every index here)

    torch.manual_seed(0)
    teacher = prepare_model(build_model("resnet32x4", 100).to(device), compute)
    objective = TeacherObjective(teacher, default_recipe("soteacher"), samples, 100, EPOCHS, world).to(device)
    objective.end_epoch(1)
    learner = Learner("teacher", teacher, objective, *make_optimizer(teacher.parameters(), OPTIM, 0.05, 1))
    with time_steps(args.warmup, args.steps, device) as per_step:
        train([learner], data, epochs=1, batch_size=batch, seed=0, speed=speed, world=world)
    t_teacher = per_step()[0]

    student = prepare_model(build_model("resnet8x4", 100).to(device), compute)
    method = METHODS["kd"](kd_defaults(), feature_shapes(student, (3, 32, 32)), feature_shapes(teacher, (3, 32, 32)),
                           samples, world).to(device)
    opt, sched = make_optimizer(list(student.parameters()) + list(method.parameters()), OPTIM, 0.05, 1)
    with time_steps(args.warmup, args.steps, device) as per_step:
        train([Learner("student", student, method, opt, sched)], data, epochs=1, batch_size=batch, seed=0,
              teacher=teacher, speed=speed, world=world)
    return {"ranks": world.size, "global_batch": batch, "teacher": t_teacher, "student": per_step()[0]}


def worker(args: argparse.Namespace) -> None:
    device, world = join(args.device, args.threads)
    try:
        emit(world, measure(args, device, world))
    finally:
        ranks.stop(world)


def one_card(args: argparse.Namespace) -> None:
    device, world = join(args.device, args.threads)
    result = measure(args, device, world)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {name}, batch {args.batch_size}, amp={args.amp}, channels_last={args.channels_last}, "
          f"compile={args.compile}, {args.steps} timed steps after {args.warmup} warm-up, training steps only")
    for key, who, target in MODELS:
        epoch = result[key] * steps_per_epoch(args.batch_size)
        print(f"{who}: {result[key] * 1000:.1f} ms/step, {epoch:.1f} s/epoch, {EPOCHS} epochs = "
              f"{epoch * EPOCHS / 60:.1f} min (target <= {target} min on one H100)")


def several(args: argparse.Namespace, forwarded: list[str]) -> None:
    n = args.gpus
    one = launch("bench.bench_gpu_epoch", 1, forwarded, args.threads)
    many = launch("bench.bench_gpu_epoch", n, forwarded, args.threads)
    unit = "card" if args.device == "cuda" else "CPU rank"
    print(f"# {device_label(args.device, n)}: 1 {unit} against {n}; weak scaling: per-rank batch {args.batch_size}, "
          f"global batch {args.batch_size} x N (an epoch of {steps_per_epoch(one['global_batch'])} steps on 1, "
          f"{steps_per_epoch(many['global_batch'])} on {n}); amp={args.amp}, channels_last={args.channels_last}, "
          f"compile={args.compile}, {args.steps} timed steps after {args.warmup} warm-up, training steps only")
    if args.device == "cpu":
        print(f"# no GPU: --gpus {n} means {n} CPU ranks (gloo), {args.threads} thread(s) each, not {n} cards; a "
              "smoke check of the launch, the times below are no GPU's")
        print(cpu_caveat(n, args.threads))
    for key, who, target in MODELS:
        parts = []
        for result in (one, many):
            ranks_here = result["ranks"]
            job = result[key] * steps_per_epoch(result["global_batch"]) * EPOCHS / 60
            parts.append(f"{ranks_here} {unit}{'s' if ranks_here > 1 else ''} {result[key] * 1000:.1f} ms/step "
                         f"(global batch {result['global_batch']}), {EPOCHS} epochs = {job:.1f} min")
        efficiency = one[key] / many[key]
        print(f"{who}: {'; '.join(parts)}; scaling efficiency {efficiency:.2f} "
              f"(1-{unit} step time / {n}-{unit} step time; 1-card target <= {target} min on one H100)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps per model")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank: the global batch is this x --gpus")
    parser.add_argument("--amp", choices=["none", "bf16"], default="bf16")
    parser.add_argument("--channels-last", action="store_true", default=True)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--gpus", type=int, default=1, help="N > 1: N ranks (a card each) against 1 card")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per rank (default: cores / --gpus)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpus < 1 or args.steps < 1 or args.warmup < 1:
        parser.error("--gpus, --steps and --warmup must be >= 1")
    args.threads = args.threads or max(1, cores() // args.gpus)
    if args.worker:
        worker(args)
    elif args.gpus == 1:
        one_card(args)
    else:
        if args.device == "cuda" and torch.cuda.device_count() < args.gpus:
            parser.error(f"--gpus {args.gpus}: {torch.cuda.device_count()} CUDA card(s) visible")
        forwarded = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                     "--amp", args.amp, "--device", args.device, "--threads", str(args.threads),
                     "--channels-last" if args.channels_last else "--no-channels-last",
                     *(["--compile"] if args.compile else [])]
        several(args, forwarded)


if __name__ == "__main__":
    main()
