"""``python -m soteacher plan CONFIG``: how many jobs a study has, per rule, and roughly how long it takes.

Compute is estimated from per-architecture training cost (seconds per image for one SGD step, and for one
inference forward) at a reference input size, scaled by the number of pixels of the study's input:

* ``CPU_COSTS`` (each architecture's ``cpu_cost`` in ``soteacher.models.zoo``) was measured on
  this project's development machine (one CPU thread, batch 64, 32×32 inputs for the CIFAR zoo, 64×64 for
  ResNet18 and 112×112 for the ImageNet-stem ResNets) with ``measure()``, counting CPU time of the process
  (the machine was shared with other work, so wall time would have been inflated; even CPU time was:
  resnet8x4 measured 19 ms per image here, about twice what DESIGN.md's probe on an idle machine implies).
* GPU hours are derived from it with an ASSUMED factor (no GPU was available to calibrate): a step on one
  modern GPU is ``GPU_FACTOR`` times faster than on one CPU thread, but never under ``GPU_STEP_FLOOR_S``
  per batch (small CIFAR nets are kernel-launch bound). The factor is calibrated so that a CIFAR-100
  resnet32x4 epoch (0.1 s per image in the table) lands at ~25 s, the order people report for the reference
  code on one V100/A100-class GPU. Treat GPU-hours as ±2×; ``--measure`` on the GPU itself replaces the assumption.

Costs not modelled: data loading (matters for streamed ImageNet), MLflow logging, checkpoint writes; each
job is charged ``JOB_OVERHEAD_S`` for starting Python and importing torch/MLflow.

Jobs on several GPUs (``compute.gpus_per_job`` × ``compute.nodes_per_job`` cards, one rank each): a job's wall-clock
time is its one-card compute divided by its cards, an ASSUMED linear scaling (gradient all-reduce, the per-rank
batch getting smaller, and the evaluation passes are not modelled), plus the start-up, which does not shrink. Its
GPU-hours are cards × wall-clock: what a cluster charges, the start-up paid on every card.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from soteacher.data.registry import DATASETS
from soteacher.models.zoo import ZOO
from soteacher.study import student_jobs as jobs
from soteacher.study.config import checkpoint_epochs, distill_pairs, input_shape, train_size
from soteacher.study.teacher_jobs import teacher_jobs
from soteacher.training.loop import evaluated_epochs

# arch -> (train-step seconds per image, forward seconds per image, side of the square input measured at): the
# zoo's measured costs (soteacher/models/zoo.py; see the module docstring)
CPU_COSTS: dict[str, tuple[float, float, int]] = {name: arch.cpu_cost for name, arch in ZOO.items()}
GPU_FACTOR = 200.0  # assumed: one GPU step vs one (contended) CPU thread of CPU_COSTS (see docstring)
GPU_STEP_FLOOR_S = 0.005  # assumed: fastest training step of a small net at batch 64 on a GPU
JOB_OVERHEAD_S = 6.0  # measured on the default study: start-up, torch + MLflow imports, set-up and exit per job
HUGE_JOBS = 1000
HUGE_GPU_HOURS = 100.0


@dataclass
class Plan:
    study: str
    dataset: str
    train_images: int
    test_images: int
    image_shape: tuple[int, int, int]
    jobs: dict[str, int]
    cpu_hours: dict[str, float]
    device_hours: dict[str, float]
    device_label: str
    arch_costs: dict[str, tuple[float, float]]  # train, forward seconds per image at the study's input size
    # per training rule and total: cards (ranks) per job, summed wall-clock hours of its jobs, and cards × wall;
    # with one card per job both hour figures are device_hours
    cards: dict[str, int] = field(default_factory=dict)
    wall_hours: dict[str, float] = field(default_factory=dict)
    gpu_hours: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def multi_rank(self) -> bool:
        return any(n > 1 for n in self.cards.values())

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())


def data_sizes(config: dict) -> tuple[int, int]:
    """(training samples the jobs see, test samples)."""
    data = config["data"]
    if data["dataset"] == "synthetic":
        return train_size(config), data["synthetic"]["test_size"]
    test = DATASETS[data["dataset"]].full_size[1]  # type: ignore[index]
    if data["test_limit"]:
        test = min(test, data["test_limit"])
    return train_size(config), test


def measure(archs, image_shape: tuple[int, int, int], device: str = "cpu", threads: int = 1, batch: int = 64,
            steps: int = 3, num_classes: int = 100) -> dict[str, tuple[float, float, int]]:
    """Time ``steps`` SGD steps and forwards of each architecture on random inputs (after one warm-up step).

    Returns arch -> (train seconds per image, forward seconds per image, input side) like ``CPU_COSTS``.
    """
    import torch

    torch.set_num_threads(threads)
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # on a CPU count the process's CPU time, not wall time: robust when the machine is shared (with one
    # intra-op thread the two agree on an idle machine); on a GPU wall time is what counts
    clock = time.process_time if dev.type == "cpu" else time.perf_counter

    return {arch: _time_arch(arch, image_shape, dev, batch, steps, num_classes, clock, sync) for arch in archs}


def _time_arch(arch, image_shape, dev, batch, steps, num_classes, clock, sync) -> tuple[float, float, int]:
    import torch
    import torch.nn.functional as F

    from soteacher.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, num_classes).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *image_shape, device=dev)
    y = torch.randint(0, num_classes, (batch,), device=dev)

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def forward():
        with torch.no_grad():
            model(x)

    timings = []
    for fn, mode in ((train_step, True), (forward, False)):
        model.train(mode)
        fn()  # warm-up
        sync()
        start = clock()
        for _ in range(steps):
            fn()
        sync()
        timings.append((clock() - start) / (steps * batch))
    return timings[0], timings[1], image_shape[-1]


def _scaled(costs: dict[str, tuple[float, float, int]], arch: str, side: int) -> tuple[float, float]:
    if arch not in costs:
        raise KeyError(f"no measured cost for {arch!r}; run `plan --measure`")
    train, fwd, ref = costs[arch]
    scale = (side * side) / (ref * ref)
    return train * scale, fwd * scale


def _method_init_epochs(method_cfg: dict) -> int:
    return int(method_cfg.get("init_epochs", 0))


def make_plan(config: dict, costs: dict[str, tuple[float, float, int]] | None = None,
              device_label: str | None = None) -> Plan:
    """Count jobs per rule and estimate compute. ``costs`` (from ``measure``) replaces the CPU table and the
    GPU assumption: the estimate is then in hours of the measured device."""
    measured = costs is not None
    costs = costs if measured else CPU_COSTS
    shape = input_shape(config)
    side = shape[-1]
    n_train, n_test = data_sizes(config)
    t, d = config["teacher"], config["distill"]
    batch_t, batch_s = t["optim"]["batch_size"], d["optim"]["batch_size"]
    archs = sorted({a for pair in distill_pairs(config) for a in pair} | set(t["archs"]))
    arch_costs = {a: _scaled(costs, a, side) for a in archs}

    def hours(train_s_img: float, n_images: int, batch: int, gpu: bool) -> float:
        if not gpu or measured:
            return train_s_img * n_images
        steps = -(-n_images // batch)
        return max(train_s_img * n_images / GPU_FACTOR, steps * GPU_STEP_FLOOR_S)

    # training epochs per method, its init stage included (AB/FT/FSP)
    epochs = {m: d["epochs"] + _method_init_epochs(d["methods"][m]) for m in jobs.distilled_methods(config)}
    groups = jobs.student_groups(config) if epochs else []
    n_distill, n_vanilla = jobs.distill_job_count(config), jobs.vanilla_job_count(config)
    job_counts = {"prepare_data": 1, "train_teacher": len(teacher_jobs(config)), "distill": n_distill,
                  **({"train_vanilla": n_vanilla} if n_vanilla else {}), "aggregate": 1}

    # the epochs evaluated on the test split (teacher/distill.eval_every; the rest train only)
    t_evals = len(evaluated_epochs(t["epochs"], t["eval_every"], checkpoint_epochs(t)))
    s_evals = len(evaluated_epochs(d["epochs"], d["eval_every"]))
    results = {}
    for gpu in (False, True):
        teacher_s = 0.0
        for job in teacher_jobs(config):
            train, fwd = arch_costs[job["teacher_arch"]]
            # synthetic data: each checkpoint also scores the training set against p*(x)
            extra = len(checkpoint_epochs(t)) * hours(fwd, n_train, batch_t, gpu) \
                if config["data"]["dataset"] == "synthetic" else 0.0
            teacher_s += (t["epochs"] * hours(train, n_train, batch_t, gpu) + t_evals * hours(fwd, n_test, batch_t, gpu)
                          + extra + JOB_OVERHEAD_S)
        student_s = 0.0
        for g in groups:
            s_train, s_fwd = arch_costs[g["student"]]
            _, t_fwd = arch_costs[g["teacher_arch"]]
            student_part = sum(hours(s_train, n_train, batch_s, gpu) * e + hours(s_fwd, n_test, batch_s, gpu)
                               * s_evals for e in epochs.values())
            if d["group_methods"]:  # one teacher forward shared by all methods
                teacher_part = max(epochs.values()) * hours(t_fwd, n_train, batch_s, gpu)
            else:
                teacher_part = sum(epochs.values()) * hours(t_fwd, n_train, batch_s, gpu)
            student_s += student_part + teacher_part
        for job in jobs.vanilla_jobs(config):  # the vanilla student: no teacher forward
            s_train, s_fwd = arch_costs[job["student"]]
            student_s += (hours(s_train, n_train, batch_s, gpu) * d["epochs"]
                          + hours(s_fwd, n_test, batch_s, gpu) * s_evals)
        student_s += (n_distill + n_vanilla) * JOB_OVERHEAD_S
        results[gpu] = {"train_teacher": teacher_s / 3600, "distill": student_s / 3600,
                        "total": (teacher_s + student_s) / 3600}

    label = device_label or ("measured device" if measured else "GPU (assumed factor)")
    device_hours = results[True] if not measured else results[False]
    # one compute section for every training job: teachers and students run on the same number of cards
    ranks_per_node, nodes = config["compute"]["gpus_per_job"], config["compute"]["nodes_per_job"]
    cards = {"train_teacher": ranks_per_node * nodes, "distill": ranks_per_node * nodes}
    startup = {"train_teacher": len(teacher_jobs(config)) * JOB_OVERHEAD_S / 3600,
               "distill": (n_distill + n_vanilla) * JOB_OVERHEAD_S / 3600}
    wall = {rule: (device_hours[rule] - startup[rule]) / cards[rule] + startup[rule] for rule in cards}
    gpu_hours = {rule: cards[rule] * wall[rule] for rule in cards}
    plan = Plan(study=config["name"], dataset=config["data"]["dataset"], train_images=n_train, test_images=n_test,
                image_shape=tuple(shape), jobs=job_counts, cpu_hours=results[False], device_hours=device_hours,
                device_label=label, arch_costs=arch_costs, cards=cards,
                wall_hours={**wall, "total": sum(wall.values())},
                gpu_hours={**gpu_hours, "total": sum(gpu_hours.values())})
    if plan.total_jobs > HUGE_JOBS:
        plan.warnings.append(f"huge study: {plan.total_jobs} jobs (> {HUGE_JOBS}); consider distill.pairs, "
                             "fewer distill.checkpoints or seeds, or a cluster profile")
    if plan.gpu_hours["total"] > HUGE_GPU_HOURS:
        unit = f"hours on {label}" if measured else "GPU-hours (estimated)"
        plan.warnings.append(f"huge study: ~{plan.gpu_hours['total']:.0f} {unit} "
                             f"(> {HUGE_GPU_HOURS:.0f}); run it on a cluster (workflow/profiles/slurm)")
    return plan


def _fmt_hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def render(plan: Plan, path: str = "") -> str:
    c, h, w = plan.image_shape
    lines = [f"{path or plan.study}: study {plan.study!r} on {plan.dataset} "
             f"({plan.train_images} train / {plan.test_images} test images, {c}x{h}x{w})",
             "jobs per rule:"]
    for rule, n in plan.jobs.items():
        lines.append(f"  {rule:<14} {n:>7}")
    lines.append(f"  {'total':<14} {plan.total_jobs:>7}")
    if plan.multi_rank:
        unit = "GPU-hours" if plan.device_label.startswith("GPU") else "device-hours"
        lines.append(f"estimated compute, {plan.device_label}:")
        lines.append(f"  {'':<14} {'cards':>5} {'wall-clock':>12} {unit:>12}")
        for part in ("train_teacher", "distill", "total"):
            cards = str(plan.cards[part]) if part in plan.cards else ""
            lines.append(f"  {part:<14} {cards:>5} {_fmt_hours(plan.wall_hours[part]):>12} "
                         f"{_fmt_hours(plan.gpu_hours[part]):>12}")
        lines.append(f"  (cards: ranks per job; wall-clock: the jobs' summed, one-card estimate / cards + start-up, "
                     f"which assumes linear scaling over the ranks; {unit} = cards x wall-clock)")
    else:
        lines.append(f"estimated compute, {plan.device_label}:")
        for part in ("train_teacher", "distill", "total"):
            lines.append(f"  {part:<14} {_fmt_hours(plan.device_hours[part]):>12}")
    if plan.device_label.startswith("GPU"):
        lines.append(f"  (one CPU thread: {plan.cpu_hours['total']:.1f} h; GPU = CPU / {GPU_FACTOR:g}, "
                     f"at least {GPU_STEP_FLOOR_S * 1000:g} ms per step - an assumption, "
                     "see soteacher/study/plan.py)")
    lines.append("per-image cost at this input size (train step / forward, ms):")
    for arch, (train, fwd) in plan.arch_costs.items():
        lines.append(f"  {arch:<14} {train * 1000:8.3f} / {fwd * 1000:7.3f}")
    for warning in plan.warnings:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)


def header_comment(plan: Plan) -> str:
    """The one-line summary each preset states at its top."""
    jobs_text = ", ".join(f"{n} {rule}" for rule, n in plan.jobs.items())
    return (f"# Plan (python -m soteacher plan): {plan.total_jobs} jobs ({jobs_text}); "
            f"~{plan.gpu_hours['total']:.1f} GPU-hours estimated"
            + (f", {plan.cards['train_teacher']} GPUs per job" if plan.multi_rank else ""))
