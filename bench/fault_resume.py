"""Fault injection: kill a training process at a random step (SIGKILL), resume it, compare with an
uninterrupted run. Prints ``resume: N/N identical``."""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.resume_driver import identical

STEPS = 12


def drive(out: Path, *args: str) -> int:
    return subprocess.run([sys.executable, "-m", "tests.resume_driver", str(out), *args],
                          capture_output=True, text=True, timeout=300).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        reference.mkdir()
        assert drive(reference) == 0
        same = 0
        for trial in range(args.trials):
            out = Path(tmp) / f"trial{trial}"
            out.mkdir()
            step = rng.randint(1, STEPS)
            drive(out, str(step), rng.choice(["SIGKILL", "SIGTERM"]))
            ok = drive(out) == 0 and identical(reference / "final.pt", out / "final.pt")
            same += ok
            print(f"# trial {trial}: killed at step {step}: {'identical' if ok else 'DIFFERENT'}", flush=True)
    print(f"resume: {same}/{args.trials} identical")


if __name__ == "__main__":
    main()
