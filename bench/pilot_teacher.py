"""Design pilot for the theory study: one teacher on synthetic data, one line per epoch (design seeds only).

    python -m bench.pilot_teacher '{"syn": {"noise_std": 0.02, "train_size": 1000}, "epochs": 80,
                                    "milestones": [30, 70], "arch": "resnet14"}'

``syn`` overrides the default generator (data seed 0, the design seed); ``recipe`` (``{term: params}``, e.g.
``{"ce": {}, "consistency": {"weight": 1.0}}``) replaces the standard recipe. Each
line: running train CE, clean train-split accuracy, test accuracy, train-split TV to p*, seconds so far. The
header gives the Bayes test accuracy (argmax p*) and E[max p*] on train. docs/theory.md lists the pilots
that chose config/theory.yaml; none of their seeds is reported.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import default_optim, default_recipe
from soteacher.data import load, prepare
from soteacher.models import build_model
from soteacher.study.config import validate
from soteacher.teachers.objective import TeacherObjective
from soteacher.training.learner import Learner
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer
from soteacher.training.state import seed_everything

GENERATOR = {"seed": 0, "num_classes": 10, "num_features": 20, "features_per_image": 2, "feature_purity_min": 0.6,
             "image_size": 16, "patch_size": 4, "noise_std": 0.15, "train_size": 2000, "test_size": 1000}


def main(args: dict) -> None:
    torch.set_num_threads(1)
    data_cfg = {"dataset": "synthetic", "synthetic": {**GENERATOR, **args.get("syn", {})}}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = prepare(data_cfg, Path(tmp))
        data = load(data_cfg, Path(tmp), torch.device("cpu"))
    ref = manifest["reference"]
    epochs = args["epochs"]
    optim = default_optim(lr=args.get("lr", 0.05), lr_milestones=args.get("milestones", []))
    seed_everything(0)
    model = build_model(args.get("arch", "resnet20"), data.num_classes)
    recipe = default_recipe("standard") if "recipe" not in args else validate(
        {"teacher": {"recipes": {"pilot": args["recipe"]}}}, deep=False)["teacher"]["recipes"]["pilot"]
    objective = TeacherObjective(model, recipe, len(data.train), data.num_classes, epochs)
    optimizer, scheduler = make_optimizer(model.parameters(), optim, optim.lr, epochs)
    print(f"# {json.dumps(args)} bayes_test={ref['bayes_acc']['test']:.1f} "
          f"Emaxp_train={ref['expected_max_pstar']['train']:.1f}", flush=True)
    started = time.perf_counter()

    def report(epoch: int, _learner: Learner, m: dict) -> None:
        print(f"ep {epoch:3d} t={time.perf_counter() - started:6.1f} loss={m['train_ce']:.3f} "
              f"trainacc={m['train_eval_acc']:5.1f} test={m['test_acc']:5.1f} tvtr={m['tv_pstar_train']:.3f}",
              flush=True)

    train([Learner("pilot", model, objective, optimizer, scheduler)], data, epochs=epochs,
          batch_size=optim.batch_size, seed=0, on_epoch_end=report, augment=args.get("augment", True))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
