"""Orchestration overhead of a finished study: Python start-up, imports (torch, MLflow) and Snakemake
scheduling as a share of total wall time. Target ≤ 10% on the default run.

Reads what a run leaves behind: Snakemake's per-job benchmark files (wall time of each job's command)
and each job's log, whose first and last timestamps bracket the job's own work. Run `make run` first.
"""

from __future__ import annotations

import argparse
import csv
import re
from datetime import datetime
from pathlib import Path

from bench.common import report

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_span(path: Path) -> float | None:
    stamps = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for line in path.read_text().splitlines()
              if (m := STAMP.match(line))]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) >= 2 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    args = parser.parse_args()
    wall = work = 0.0
    jobs = 0
    for bench_file in sorted((args.logs / "benchmarks").rglob("*.tsv")):
        log_file = args.logs / bench_file.relative_to(args.logs / "benchmarks").with_suffix(".log")
        span = log_span(log_file) if log_file.is_file() else None
        if span is None:
            continue
        with open(bench_file) as f:
            seconds = float(next(csv.DictReader(f, delimiter="\t"))["s"])
        wall, work, jobs = wall + seconds, work + span, jobs + 1
    if not jobs:
        print(f"orchestration_overhead: no finished jobs under {args.logs}/ — run `make run` first")
        return
    runs = sorted((Path(".snakemake") / "log").glob("*.snakemake.log"))
    print(f"# {jobs} training jobs: {wall:.0f} s of job wall time, {work:.0f} s inside the jobs' own work "
          f"(the rest is interpreter start-up, imports, MLflow setup)")
    report("orchestration_overhead (share of job wall time outside the work)", 100 * (wall - work) / wall,
           "<= 10%", unit="%")
    if runs:
        text = runs[-1].read_text()
        m = re.search(r"Elapsed time: (\d+):(\d\d):(\d\d)", text)
        if m:
            print(f"# last Snakemake run elapsed {int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])} s")


if __name__ == "__main__":
    main()
