"""Orchestration overhead of a finished study: the share of its time not spent training.

Run the default study first (`make run`), then `python -m bench.bench_orchestration`. Reads what the run left:
Snakemake's log (its start, each job's start and end, the run's end) and each job's log, where the training
loop states its own time ("training loop: N epoch(s) in X s, Y s of it in epoch-end callbacks"; work = X - Y).
The log is the newest under .snakemake/log/ that ran training jobs: a later no-op run or `--report` writes a
newer one with no job in it.

Two figures:

* overhead (the target): time outside training loops within jobs, plus the time no job runs at all (Snakemake
  start-up, DAG, gaps; once per slot), over the same plus the training loops. Outside the loops means
  interpreter start-up, torch/MLflow imports, MLflow run set-up and per-epoch logging, data and model loading,
  checkpoint writing, and the whole of the data-preparation and aggregation jobs.
* strict: 1 - work / (slots x elapsed), slots = the most jobs that ran at once. It also counts a slot left idle
  while the other finishes a longer job (the DAG's shape on this many slots, not start-up or tracking).
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

from bench.common import report

START = re.compile(r"^\s*Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", re.M)
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
JOB_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOB_ID = re.compile(r"^\s+jobid: (\d+)$")
JOB_LOG = re.compile(r"^\s+log: (\S+)")
JOB_END = re.compile(r"^Finished jobid: (\d+)")
TRAINING_RULES = ("train_teacher", "distill", "train_vanilla")
LOOP = re.compile(r"training loop: \d+ epoch\(s\) in ([\d.]+) s, ([\d.]+) s of it in epoch-end callbacks")


def parse_snakemake_log(text: str) -> tuple[float, list[dict]]:
    """(elapsed seconds, jobs with rule, log, start and end in seconds from the run's start)."""
    t0 = datetime.strptime(START.search(text)[1], "%Y-%m-%d %H:%M:%S")
    now = 0.0
    jobs: dict[str, dict] = {}
    pending: dict | None = None
    for line in text.splitlines():
        if m := STAMP.match(line):
            now = (datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y") - t0).total_seconds()
        elif m := JOB_START.match(line):
            pending = {"rule": m[1], "start": now, "log": None}
        elif pending is not None and (m := JOB_ID.match(line)):
            jobs[m[1]] = pending
        elif pending is not None and (m := JOB_LOG.match(line)):
            pending["log"] = m[1].rstrip(",")
        elif m := JOB_END.match(line):
            if m[1] in jobs:
                jobs[m[1]]["end"] = now
            pending = None
    return now, [j for j in jobs.values() if "end" in j and j["rule"] != "all"]


def max_concurrency(jobs: list[dict]) -> int:
    events = sorted([(j["start"], 1) for j in jobs] + [(j["end"], -1) for j in jobs])  # ends first on ties
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def busy_seconds(jobs: list[dict]) -> float:
    """Seconds during which at least one job ran."""
    total, until = 0.0, float("-inf")
    for start, end in sorted((j["start"], j["end"]) for j in jobs):
        if end > until:
            total += end - max(start, until)
            until = end
    return total


def loop_seconds(log: Path) -> float:
    return sum(float(m[1]) - float(m[2]) for m in LOOP.finditer(log.read_text())) if log.is_file() else 0.0


def training_jobs(log: Path) -> list[dict]:
    """The finished jobs of the study's training rules in a Snakemake log ([] for a log that is not a run's)."""
    try:
        _, jobs = parse_snakemake_log(log.read_text(errors="replace"))
    except (OSError, TypeError, ValueError):  # unreadable, or no start date (TypeError: START did not match)
        return []
    return [j for j in jobs if j["rule"] in TRAINING_RULES]


def training_log(log_dir: Path) -> tuple[Path | None, int]:
    """(the newest Snakemake log in ``log_dir`` that ran training jobs, how many newer logs did not)."""
    # the file names are the runs' start times; mtimes break ties only
    logs = sorted(log_dir.glob("*.snakemake.log"), key=lambda p: (p.name, p.stat().st_mtime), reverse=True)
    for skipped, log in enumerate(logs):
        if training_jobs(log):
            return log, skipped
    return None, len(logs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snakemake-log", type=Path,
                        help="default: the newest under .snakemake/log/ that ran training jobs")
    args = parser.parse_args()
    rules = ", ".join(TRAINING_RULES)
    if args.snakemake_log is not None:
        log_file = args.snakemake_log
        if not training_jobs(log_file):
            raise SystemExit(f"orchestration_overhead: {log_file} shows no finished training job ({rules})")
        print(f"# Snakemake log: {log_file} (given)")
    else:
        log_dir = Path(".snakemake/log")
        log_file, skipped = training_log(log_dir)
        if log_file is None:
            found = f"none of the {skipped} Snakemake logs" if skipped else "no Snakemake log"
            raise SystemExit(f"orchestration_overhead: {found} under {log_dir}/ shows a finished training job "
                             f"({rules}); run the study first (`make run`)")
        newer = f"; {skipped} newer log(s) without training jobs skipped" if skipped else ""
        print(f"# Snakemake log: {log_file} (the newest that ran training jobs{newer})")
    elapsed, jobs = parse_snakemake_log(log_file.read_text())
    for job in jobs:
        job["loop"] = loop_seconds(Path(job["log"])) if job["log"] else 0.0
    training = [j for j in jobs if j["loop"] > 0]
    if not training or elapsed <= 0:
        raise SystemExit(f"orchestration_overhead: the jobs in {log_file} left no training-loop times in their logs "
                         "(moved or deleted logs/?)")
    slots = max_concurrency(jobs)
    work = sum(j["loop"] for j in training)
    job_time = sum(j["end"] - j["start"] for j in jobs)
    idle_all = elapsed - busy_seconds(jobs)  # no job running: Snakemake alone
    outside = sum(j["end"] - j["start"] - j["loop"] for j in jobs)
    print(f"# {log_file}: {len(jobs)} jobs ({len(training)} training), {elapsed:.0f} s elapsed, up to {slots} at "
          f"once; training loops {work:.0f} s, jobs {job_time:.0f} s, no job running {idle_all:.0f} s")
    print(f"# training jobs: {sum(j['end'] - j['start'] - j['loop'] for j in training) / len(training):.1f} s "
          "each outside the loop (start-up, imports, MLflow, loading, writing)")
    report("orchestration_overhead (share of job time + Snakemake-only time outside training loops)",
           100 * (outside + slots * idle_all) / (job_time + slots * idle_all), "<= 10%", unit="%")
    print(f"# strict, also counting slots left idle by the DAG: {100 * (1 - work / (slots * elapsed)):.2f}% "
          f"of {slots} x {elapsed:.0f} s")


if __name__ == "__main__":
    main()
