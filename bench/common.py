"""Shared bits for the benchmark scripts: synthetic in-memory data of a given shape, timing."""

from __future__ import annotations

import time

import torch

from soteacher.core.settings import Compute, Optim
from soteacher.data import Data, Split


def default_optim(**overrides) -> Optim:
    """The schema's default optimiser (SGD, lr 0.05, momentum 0.9, weight decay 5e-4, batch 64, no lr decay),
    ``overrides`` on top."""
    from soteacher.study.config import defaults_at

    return Optim(**{**defaults_at("teacher", "optim"), **overrides})


def default_compute(**overrides) -> Compute:
    """The schema's default ``compute`` section, ``overrides`` on top."""
    from soteacher.study.config import defaults_at

    return Compute(**{**defaults_at("compute"), **overrides})


def default_recipe(name: str) -> dict:
    """A teacher recipe as the schema's default ``teacher.recipes`` fill it (``standard`` or ``soteacher``)."""
    from soteacher.study.config import validate

    return validate({}, deep=False)["teacher"]["recipes"][name]


def random_data(n: int, num_classes: int, size: int, device: torch.device, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    split = Split(images.to(device), labels.to(device), None)
    test = Split(images[:64].to(device), labels[:64].to(device), None)
    return Data("random", num_classes, split, test, mean=torch.full((1, 3, 1, 1), 127.0, device=device),
                std=torch.full((1, 3, 1, 1), 64.0, device=device), crop_padding=4, flip=True)


def timed(fn, repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (seconds), synchronising CUDA around each."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def kd_defaults() -> dict:
    """KD's hyper-parameters as the schema fills them in (γ = α = 0.5, T = 4: the paper's recipe)."""
    from soteacher.study.config import validate

    return validate({"distill": {"methods": {"kd": {}}}}, deep=False)["distill"]["methods"]["kd"]


def report(name: str, value: float, target: str, unit: str = "x") -> None:
    print(f"{name}: {value:.2f}{unit} (target {target})", flush=True)
