"""Multi-rank scaling: images/s of N ranks (DDP, default 2) against 1 process, resnet20 SoTeacher teacher, 32 px.

Weak scaling: every rank trains on a shard of ``--batch-size`` samples, so the global batch is ``--batch-size`` × N
and each rank does the single process's work per step; the scaling efficiency is ips_N / (N · ips_1) (1 when the
ranks cost nothing but their own step). Target on CPU (gloo, 1 thread per rank, N ≤ cores) ≥ 0.8: per step the ranks
all-reduce resnet20's 0.28 M gradients (≈ 1 MB) and gather the consistency buffer's rows, a few ms against a step of
hundreds of ms; the rest of the budget is for the cores sharing memory bandwidth and caches.

The parent starts each measurement as a subprocess of this module in worker mode (``--worker``): 1 process directly,
N ranks under torchrun (``SOTEACHER_RANKS=torchrun``, as ``python -m soteacher`` starts a job's ranks). Each worker
times its training steps only (after ``--warmup`` untimed ones; no evaluation, no epoch end) and rank 0 prints one
JSON line that the parent reads. ``launch``, ``join``, ``time_steps`` and ``emit`` are shared with
``bench_gpu_epoch --gpus N``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from bench.common import default_compute, default_optim, default_recipe, random_data, report
from soteacher.core import devices, ranks
from soteacher.core.ranks import LAUNCHED, World

REPO = Path(__file__).resolve().parents[1]
RESULT = "BENCH_RESULT "  # the prefix of the JSON line a worker's rank 0 prints
OPTIM = default_optim()
TARGET = ">= 0.8"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- parent side ----------------------------------------------------------------------------------------------------

def launch(module: str, n_ranks: int, worker_args: list[str], threads: int, timeout: float = 1800) -> dict:
    """Run ``python -m module --worker *worker_args`` as 1 process, or as ``n_ranks`` ranks under torchrun, and return
    the JSON object its rank 0 printed. Exits with the worker's stderr when it fails."""
    import soteacher

    cmd = [sys.executable, "-m", module, "--worker", *worker_args]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop(LAUNCHED, None)
    if n_ranks > 1:
        cmd[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n_ranks}", "--max-restarts=0"]
        env[LAUNCHED] = "torchrun"
    # the workers import this checkout's bench and the same soteacher as this process
    roots = [str(REPO), str(Path(soteacher.__file__).resolve().parents[1])]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*roots, env.get("PYTHONPATH")]))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line[len(RESULT):] for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])


def device_label(device: str, n_ranks: int) -> str:
    """What the ranks run on, for the output: the card's name on CUDA."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} x{n_ranks} (cuda:0..{n_ranks - 1}, nccl)"
    return f"CPU, {n_ranks} CPU rank(s) (gloo)"


def cpu_caveat(n_ranks: int, threads: int) -> str:
    c = cores()
    used = n_ranks * threads
    verdict = (f"oversubscribed ({used} > {c}): the ranks compete for cores and the efficiency is not DDP's"
               if used > c else f"{used} <= {c}: each thread has a core, if nothing else runs")
    return (f"# CPU caveat: on a machine with C cores, N ranks x T threads > C oversubscribes; here C = {c}, "
            f"N x T = {n_ranks} x {threads}: {verdict}")


def describe(result: dict) -> str:
    """A worker's step: wall time, global batch, and each rank's CPU time (well below the wall time: it waited, for
    the other ranks or for a core)."""
    cpu = "/".join(f"{c * 1000:.0f}" for c in result["cpu_s_per_step"])
    batch = "batch" if result["ranks"] == 1 else "global batch"
    return (f"{result['s_per_step'] * 1000:.1f} ms/step, {batch} {result['global_batch']}; CPU time "
            f"{cpu} ms/step{' per rank' if result['ranks'] > 1 else ''}")


# --- worker side ----------------------------------------------------------------------------------------------------

def join(device: str, threads: int) -> tuple[torch.device, World]:
    """This worker's device and ranks: cuda:LOCAL_RANK (cuda:0 alone) or the CPU, and the process group under
    torchrun (gloo on CPU, NCCL on CUDA); SINGLE when started as one process."""
    found = ranks.environment()
    compute = default_compute(device=device, threads=threads, deterministic=False,
                              gpus_per_job=1 if found is None else found[1])
    where = devices.setup(compute, 0 if found is None else found[2])  # a card of its own: no lock file
    return where, ranks.start(compute, where)


@contextlib.contextmanager
def time_steps(warmup: int, steps: int, device: torch.device) -> Iterator[Callable[[], tuple[float, float]]]:
    """Within the block, the training loop's evaluation is skipped and its steps are clocked: the yielded function
    gives the wall and CPU seconds per step of steps ``warmup`` + 1 … ``warmup`` + ``steps`` (from the end of the
    last warm-up step to the end of the last timed one: drawing and augmenting the batches is in, the epoch's end
    is not)."""
    import soteacher.training.loop as loop

    marks: list[tuple[float, float]] = []
    count = [0]
    step, evaluate = loop._step, loop.evaluate

    def clocked(*args, **kwargs):
        step(*args, **kwargs)
        count[0] += 1
        if count[0] in (warmup, warmup + steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks.append((time.perf_counter(), time.process_time()))

    def per_step() -> tuple[float, float]:
        """(wall, this process's CPU) seconds per step."""
        if len(marks) != 2:
            raise RuntimeError(f"{count[0]} training steps ran, {warmup} + {steps} were to be timed")
        return (marks[1][0] - marks[0][0]) / steps, (marks[1][1] - marks[0][1]) / steps

    loop._step, loop.evaluate = clocked, lambda model, data, *args: {}
    try:
        yield per_step
    finally:
        loop._step, loop.evaluate = step, evaluate


def emit(world: World, result: dict) -> None:
    if world.is_main:
        print(RESULT + json.dumps(result), flush=True)


def worker(args: argparse.Namespace) -> None:
    from soteacher.models import build_model
    from soteacher.teachers.objective import TeacherObjective
    from soteacher.training.learner import Learner
    from soteacher.training.loop import train
    from soteacher.training.optim import make_optimizer

    device, world = join(args.device, args.threads)
    try:
        batch = args.batch_size * world.size
        n = batch * (args.warmup + args.steps)
        data = random_data(n, 100, 32, device)
        torch.manual_seed(0)
        model = build_model(args.arch, 100).to(device)
        objective = TeacherObjective(model, default_recipe("soteacher"), n, 100, 2, world).to(device)
        objective.end_epoch(1)  # the consistency term active, as in every epoch after the first
        learner = Learner("teacher", model, objective, *make_optimizer(model.parameters(), OPTIM, 0.05, 1))
        with time_steps(args.warmup, args.steps, device) as per_step:
            train([learner], data, epochs=1, batch_size=batch, seed=0, world=world)
        seconds, cpu = per_step()
        cpus = world.gather_objects(cpu)  # every rank's: a starved rank shows as CPU time well below the wall time
        emit(world, {"ranks": world.size, "global_batch": batch, "s_per_step": seconds, "images_per_s": batch / seconds,
                     "cpu_s_per_step": cpus, "threads": torch.get_num_threads()})
    finally:
        ranks.stop(world)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="N: ranks against 1 process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (and of the 1 process)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank: the global batch is this x N")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: rank r on cuda:r (NCCL)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.ranks < 2 or args.steps < 1 or args.warmup < 1:
        parser.error("--ranks must be >= 2, --steps and --warmup >= 1")
    if args.device == "cuda" and torch.cuda.device_count() < args.ranks:
        parser.error(f"--device cuda --ranks {args.ranks}: {torch.cuda.device_count()} CUDA card(s) visible")
    forwarded = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                 "--arch", args.arch, "--device", args.device, "--threads", str(args.threads)]
    module = "bench.bench_ranks"
    one = launch(module, 1, forwarded, args.threads)
    many = launch(module, args.ranks, forwarded, args.threads)
    n = args.ranks
    efficiency = many["images_per_s"] / (n * one["images_per_s"])
    print(f"# {args.arch} teacher (soteacher recipe), 32 px, 100 classes, random data; {device_label(args.device, n)}; "
          f"weak scaling: per-rank batch {args.batch_size}, global batch {args.batch_size} x N; {args.threads} "
          f"thread(s) per rank; {args.steps} timed steps after {args.warmup} warm-up, training steps only")
    if args.device == "cpu":
        print(cpu_caveat(n, args.threads))
    print(f"1 process: {one['images_per_s']:.1f} images/s ({describe(one)})")
    print(f"{n} ranks: {many['images_per_s']:.1f} images/s ({describe(many)})")
    if args.device == "cuda":
        target = "none set on CUDA"
    else:
        target = TARGET if n * args.threads <= cores() else f"{TARGET} only without oversubscription"
    report(f"ranks_scaling_efficiency (images/s of {n} ranks / ({n} x 1 process))", efficiency, target, unit="")


if __name__ == "__main__":
    main()
