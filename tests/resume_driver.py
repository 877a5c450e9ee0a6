"""Train a tiny SoTeacher teacher (recording Filter-KD's table too) with resumable state; optionally kill itself at a
given step.

``python -m tests.resume_driver OUT_DIR [KILL_AT_STEP [SIGNAL]]`` — used by the resume tests and by
``bench/fault_resume.py``. The final weights, optimiser state, buffers (the consistency term's and the Filter-KD
table) and history go to OUT_DIR/final.pt.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import torch

from soteacher.study import config
from soteacher.training.loop import train
from soteacher.training.state import Resume
from tests.helpers import TINY_CONFIG, filter_table, soteacher_recipe, teacher_learner, tiny_data

EPOCHS = 3


def main() -> int:
    out = Path(sys.argv[1])
    kill_at = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    sig = getattr(signal, sys.argv[3]) if len(sys.argv) > 3 else signal.SIGKILL
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    data = tiny_data(config.load(TINY_CONFIG))
    learner = teacher_learner(data, soteacher_recipe(), seed=0, epochs=EPOCHS, filter_table=filter_table())
    forward, steps = learner.objective.forward, [0]

    def counting_forward(*args, **kwargs):
        steps[0] += 1
        if steps[0] == kill_at:
            os.kill(os.getpid(), sig)
        return forward(*args, **kwargs)

    learner.objective.forward = counting_forward
    from soteacher.core.errors import TrainingInterrupted

    try:
        train([learner], data, epochs=EPOCHS, batch_size=16, seed=0, resume=Resume(out / "state.pt", every=1))
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return 143
    torch.save({"model": learner.model.state_dict(), "optimizer": learner.optimizer.state_dict(),
                "objective": learner.objective.state_dict(), "history": learner.history}, out / "final.pt")
    return 0


def identical(a: Path, b: Path) -> bool:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    buffers = [(x["optimizer"]["state"][k]["momentum_buffer"], y["optimizer"]["state"][k]["momentum_buffer"])
               for k in x["optimizer"]["state"]]
    return x["history"] == y["history"] and all(
        torch.equal(x[part][k], y[part][k]) for part in ("model", "objective") for k in x[part]
    ) and x["optimizer"]["param_groups"] == y["optimizer"]["param_groups"] and (
        x["optimizer"]["state"].keys() == y["optimizer"]["state"].keys()) and all(torch.equal(*b) for b in buffers)


if __name__ == "__main__":
    raise SystemExit(main())
