"""Small builders shared by tests: tiny in-memory data and learners."""

from __future__ import annotations

import torch

from soteacher.student_side.methods import METHODS
from soteacher.teacher_side.data import Data, Split
from soteacher.teacher_side.data.synthetic import generate
from soteacher.teacher_side.loop import Learner, make_optimizer, seed_everything
from soteacher.teacher_side.models import build_model, feature_shapes
from soteacher.teacher_side.objective import TeacherObjective

OPTIM = {"lr": 0.05, "lr_by_arch": {}, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 16,
         "lr_milestones": [2], "lr_gamma": 0.1}


def tiny_data(config: dict, val_size: int = 0) -> Data:
    t = generate(config["data"]["synthetic"], val_size=val_size)
    train, test = (Split(t[f"{s}_images"], t[f"{s}_labels"], t[f"{s}_pstar"]) for s in ("train", "test"))
    val = Split(t["val_images"], t["val_labels"], t["val_pstar"]) if val_size else None
    return Data("synthetic", t["train_pstar"].shape[1], train, test,
                mean=torch.full((1, 3, 1, 1), 127.0), std=torch.full((1, 3, 1, 1), 64.0), crop_padding=2, flip=True,
                val=val)


def teacher_learner(data: Data, recipe: dict, seed: int, arch: str = "resnet8", epochs: int = 2) -> Learner:
    seed_everything(seed)
    model = build_model(arch, data.num_classes)
    objective = TeacherObjective(model, recipe, len(data.train), data.num_classes, epochs)
    optimizer, scheduler = make_optimizer(model.parameters(), OPTIM, OPTIM["lr"])
    return Learner("teacher", model, objective, optimizer, scheduler)


def student_learner(data: Data, teacher: torch.nn.Module, method: str, cfg: dict, seed: int,
                    arch: str = "resnet8") -> Learner:
    seed_everything(seed)
    model = build_model(arch, data.num_classes)
    shape = data.image_shape
    module = METHODS[method](cfg, feature_shapes(model, shape), feature_shapes(teacher, shape), len(data.train))
    optimizer, scheduler = make_optimizer(list(model.parameters()) + list(module.parameters()), OPTIM, OPTIM["lr"])
    return Learner(method, model, module, optimizer, scheduler)
