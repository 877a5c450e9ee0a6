"""Snakemake's directory lock after a crash: removed only when no Snakemake works in the directory (``make run``).

Snakemake records the files a run reads and writes in ``.snakemake/locks/`` and deletes the records when it ends.
A SIGKILL or a power cut leaves them, and every later run stops with "Directory cannot be locked" until
``snakemake --unlock``. Unlocking under a live run would let two runs write the same files, so a lock is removed
only when every process is visible (Linux ``/proc``) and none is a Snakemake, or a job of this pipeline, working
in the directory. Whenever that cannot be told, nothing is removed and the message says what to check and run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LOCK_DIR = Path(".snakemake/locks")
# the commands Snakemake's rules run (soteacher.cli); a job left running by a killed Snakemake still writes outputs
JOB = re.compile(r"-m soteacher (train-teacher|distill|import-teacher|prepare-data|aggregate)\b")


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str


def lock_files(workdir: Path) -> list[Path]:
    folder = workdir / LOCK_DIR
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


def _argv(pid: int) -> list[str]:
    """The process's argument list; [] for a zombie or a kernel thread (they hold nothing)."""
    raw = (PROC / str(pid) / "cmdline").read_bytes()
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _ancestors() -> set[int]:
    """This process and its parents (make, the shell running this command): not the run that holds a lock."""
    pids, pid = set(), os.getpid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the command name in parentheses
    return pids


def _relevant(argv: list[str]) -> bool:
    return any(Path(a).name == "snakemake" for a in argv) or JOB.search(" ".join(argv)) is not None


def _inside(path: Path, workdir: Path) -> bool:
    return path == workdir or workdir in path.parents


def _hidden_processes() -> str | None:
    """Why other users' processes may be invisible here, or None when /proc shows them all."""
    try:
        mounts = (PROC / "mounts").read_text().splitlines()
    except OSError:
        return "cannot read /proc/mounts"
    for line in mounts:
        fields = line.split()
        if len(fields) > 3 and fields[1] == str(PROC):
            hidepid = re.search(r"hidepid=(\w+)", fields[3])
            if hidepid and hidepid[1] not in ("0", "off"):
                return f"/proc is mounted with hidepid={hidepid[1]} (other users' processes are hidden)"
    return None


def holders(workdir: Path) -> tuple[list[Holder], list[str]]:
    """(the Snakemake and pipeline-job processes working in ``workdir``, reasons the answer may be incomplete)."""
    workdir = workdir.resolve()
    if not PROC.is_dir() or not (PROC / "self").exists():
        return [], [f"no {PROC} here (not Linux): cannot list processes"]
    unsure = [reason] if (reason := _hidden_processes()) else []
    found: list[Holder] = []
    skip = _ancestors()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        try:
            argv = _argv(pid)
        except FileNotFoundError:  # ended meanwhile
            continue
        except OSError as err:
            unsure.append(f"cannot read the command of process {pid} ({err.strerror})")
            continue
        if not _relevant(argv):
            continue
        command = shlex.join(argv)
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except FileNotFoundError:
            continue
        except OSError as err:
            unsure.append(f"cannot read the directory of process {pid} ({err.strerror}): {command}")
            continue
        directory = next((Path(a).resolve() for a, b in zip(argv, argv[1:]) if a in ("-d", "--directory")), None)
        if _inside(cwd, workdir) or (directory is not None and _inside(directory, workdir)):
            found.append(Holder(pid, command))
    return found, unsure


def unlock_if_stale(workdir: Path, snakemake_args: list[str], snakemake: str = "snakemake") -> int:
    """Run ``snakemake --unlock <snakemake_args>`` when ``workdir`` has a lock no live process holds; say why not
    otherwise. Returns 0 unless the unlock itself failed: the run that follows reports a lock that is still there."""
    locks = lock_files(workdir)
    if not locks:
        return 0
    unlock = [snakemake, "--unlock", *snakemake_args]
    where = workdir.resolve() / LOCK_DIR
    found, unsure = holders(workdir)
    if found:
        running = "; ".join(f"pid {h.pid}: {h.command}" for h in found)
        print(f"soteacher: {where} is in use by a running Snakemake or job ({running}); not unlocking. Wait for it "
              f"to end, or stop it (kill {' '.join(str(h.pid) for h in found)}), then run the command again.",
              file=sys.stderr)
        return 0
    if unsure:
        print(f"soteacher: found Snakemake's lock in {where} but cannot tell whether a Snakemake runs there: "
              f"{'; '.join(unsure)}. If none does (check `ps -ef | grep snakemake`), remove the lock with "
              f"`cd {shlex.quote(str(workdir))} && {shlex.join(unlock)}` and run the command again.", file=sys.stderr)
        return 0
    print(f"soteacher: removing a stale Snakemake lock ({len(locks)} file(s) in {where}, left by a run that was "
          f"killed; no Snakemake runs there): {shlex.join(unlock)}", file=sys.stderr)
    out = subprocess.run(unlock, cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"soteacher: `{shlex.join(unlock)}` failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-3000:]}",
              file=sys.stderr)
    return out.returncode
