"""Workstation GPU assignment, for real: concurrent processes lock cards through soteacher.core.devices;
and its deterministic set-up.

The GPU count is simulated with SOTEACHER_NUM_GPUS (no GPU needed); the locks, processes, kills and the
Snakemake run that reads the default profile are real.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from soteacher.core import devices
from soteacher.core.errors import DeviceError
from tests.helpers import BIN, REPO, python_output

# A job stand-in: announce, lock its cards the way select_device (one) or the launcher (several) does, report
# them with the time, hold them until told to stop (or for HOLD seconds), report the time it lets them go.
HOLDER = """
import sys, time
from pathlib import Path
from soteacher.core import devices
release, count, hold = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
print("waiting", flush=True)
indices = devices.acquire_gpus(count, devices.gpu_count(), poll_seconds=0.1)
print(f"acquired {','.join(map(str, indices))} at {time.time()}", flush=True)
deadline = time.monotonic() + (hold if hold > 0 else 600)  # a net for orphans, not a test's pace (loaded machines)
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print(f"released {','.join(map(str, indices))} at {time.time()}", flush=True)
"""


class Holder:
    def __init__(self, name: str, tmp: Path, num_gpus: int, count: int = 1, hold: float = 0):
        self.release_file = tmp / f"release-{name}"
        env = dict(os.environ, SOTEACHER_NUM_GPUS=str(num_gpus), SOTEACHER_GPU_LOCK_DIR=str(tmp / "locks"))
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(self.release_file), str(count), str(hold)],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE)
        self.lines: list[str] = []
        self._buffer = b""

    def _read(self, timeout: float) -> bool:
        """Collect whatever the child printed within ``timeout`` s (unbuffered); False once it closed stdout."""
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(fd, 4096)
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        self.lines += [line.decode().strip() for line in complete]
        return bool(chunk)

    def printed(self, prefix: str) -> str | None:
        return next((line for line in self.lines if line.startswith(prefix)), None)

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """Block until the child prints a line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while not self.printed(prefix):
            if time.monotonic() > deadline:
                raise AssertionError(f"child {self.proc.pid} did not print '{prefix}' within {timeout} s")
            if not self._read(0.1):
                raise AssertionError(f"child {self.proc.pid} exited ({self.proc.wait()}) before '{prefix}'")
        return self.printed(prefix)

    def indices(self, timeout: float = 60) -> list[int]:
        return [int(i) for i in self.expect("acquired", timeout).split()[1].split(",")]

    def index(self) -> int:
        [index] = self.indices()
        return index

    def held(self) -> tuple[float, float]:
        """(time it got its cards, time it let them go), by its own clock lines."""
        return float(self.expect("acquired").split()[-1]), float(self.expect("released").split()[-1])

    def release(self) -> None:
        self.release_file.touch()
        self.expect("released")
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def holders(tmp_path):
    started: list[Holder] = []

    def start(name: str, num_gpus: int = 3, count: int = 1, hold: float = 0) -> Holder:
        holder = Holder(name, tmp_path, num_gpus, count, hold)
        started.append(holder)
        return holder

    yield start
    for holder in started:  # only the processes this test started
        if holder.proc.poll() is None:
            holder.proc.kill()
            holder.proc.wait(timeout=30)


def _lock_owner(tmp_path: Path, index: int) -> int:
    return int((tmp_path / "locks" / f"gpu{index}.lock").read_text().split()[0])


@pytest.mark.slow
def test_three_gpus_one_job_each_fourth_waits_killed_holder_frees_its_card(holders, tmp_path):
    first = [holders(f"h{i}") for i in range(3)]  # start all three together: they race for the locks
    index_of = {h: h.index() for h in first}
    print("assignment:", {h.proc.pid: i for h, i in index_of.items()})
    assert sorted(index_of.values()) == [0, 1, 2]  # one-to-one while all three run
    for holder, index in index_of.items():
        assert holder.proc.poll() is None
        assert _lock_owner(tmp_path, index) == holder.proc.pid

    fourth = holders("h3")
    fourth.expect("waiting")
    deadline = time.monotonic() + 1.5  # 15 polls: it must still be waiting, every card is taken
    while time.monotonic() < deadline:
        fourth._read(0.1)
    assert fourth.proc.poll() is None
    assert fourth.printed("acquired") is None, "the fourth process got a card while three were held"

    victim = next(h for h, i in index_of.items() if i == 1)
    victim.kill()  # SIGKILL: no cleanup code runs, the kernel drops the flock
    assert fourth.index() == 1
    assert _lock_owner(tmp_path, 1) == fourth.proc.pid
    survivors = [h for h in first if h is not victim]
    assert all(h.proc.poll() is None for h in survivors)

    # a holder that finishes normally frees its card too, and the next job takes exactly that one
    done = next(h for h in survivors if index_of[h] == 0)
    done.release()
    fifth = holders("h4")
    assert fifth.index() == 0
    for holder in (fourth, fifth, *[h for h in survivors if h is not done]):
        holder.release()


def _hold_card(tmp_path: Path, index: int):
    """This test process locks card ``index`` the way a job would (an open file description of its own)."""
    (tmp_path / "locks").mkdir(exist_ok=True)
    handle = open(tmp_path / "locks" / f"gpu{index}.lock", "a")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


@pytest.mark.slow
def test_a_two_card_job_takes_the_two_free_cards_and_a_second_one_waits_for_the_first(holders, tmp_path):
    card1 = _hold_card(tmp_path, 1)  # another job's card
    first = holders("two-a", count=2)
    assert first.indices() == [0, 2]
    assert {_lock_owner(tmp_path, i) for i in (0, 2)} == {first.proc.pid}

    second = holders("two-b", count=2)
    second.expect("waiting")
    card1.close()  # card 1 is free now, but one card is not the two it needs
    deadline = time.monotonic() + 1.5  # 15 polls
    while time.monotonic() < deadline:
        second._read(0.1)
    assert second.printed("acquired") is None, "the second job started with fewer cards than it asked for"
    # waiting, it holds no card: another job can take card 1 (tried for up to 5 s: it may be mid-round, and on a
    # loaded machine descheduled there)
    for _ in range(500):
        try:
            card1 = _hold_card(tmp_path, 1)
            break
        except BlockingIOError:
            time.sleep(0.01)
    else:
        raise AssertionError("the waiting job kept card 1 locked: a partial hold, the deadlock recipe")
    card1.close()

    first.release()
    # the first job's exit drops its two locks one after the other (in no promised order), so the second may
    # take 0 and 1 or, polling between the two, 1 and 2: any two cards, card 1 among them, both its own
    taken = second.indices()
    assert len(set(taken)) == 2 and 1 in taken
    assert {_lock_owner(tmp_path, i) for i in taken} == {second.proc.pid}
    second.release()


@pytest.mark.slow
def test_jobs_each_wanting_every_card_never_deadlock_and_never_overlap(holders):
    """Two cards, three jobs wanting both, started together: holding one card while waiting for the other would
    deadlock the first two (each holds one); all or nothing, they take turns."""
    jobs = [holders(f"all-{i}", num_gpus=2, count=2, hold=0.5) for i in range(3)]
    for job in jobs:
        assert job.indices(timeout=90) == [0, 1]
        assert job.proc.wait(timeout=60) == 0
    spans = sorted(job.held() for job in jobs)
    print("held:", [(round(a - spans[0][0], 2), round(b - spans[0][0], 2)) for a, b in spans])
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans


def test_a_job_asking_for_more_cards_than_the_machine_has_fails_in_plain_words(tmp_path, monkeypatch):
    monkeypatch.setenv("SOTEACHER_GPU_LOCK_DIR", str(tmp_path / "locks"))
    with pytest.raises(DeviceError, match=r"asks for 3 GPUs \(compute.gpus_per_job\) but only 2 are visible"):
        devices.acquire_gpus(3, 2, timeout=1)
    assert not (tmp_path / "locks").exists() or not any((tmp_path / "locks").iterdir())  # locked nothing


def test_visible_card_ids_name_the_cards_for_the_ranks(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_card_ids([0, 2]) == "0,2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,GPU-8f6a")
    assert devices.visible_card_ids([0, 2]) == "4,GPU-8f6a"  # the physical cards, not this job's numbering
    with pytest.raises(DeviceError, match="not among the 3 cards"):
        devices.visible_card_ids([3])


def test_waiting_for_a_card_can_time_out(tmp_path, monkeypatch):
    monkeypatch.setenv("SOTEACHER_GPU_LOCK_DIR", str(tmp_path / "locks"))
    held = devices.acquire_gpu(1)
    assert held == 0
    try:
        # flock is per open file description: a second open in this process conflicts like another job would
        with pytest.raises(TimeoutError, match="no free GPU among 1"):
            devices.acquire_gpu(1, poll_seconds=0.05, timeout=0.3)
    finally:
        devices._held_locks.pop().close()


def test_locks_are_named_by_the_physical_card_so_studies_on_other_visible_sets_agree(tmp_path, monkeypatch):
    """A job seeing all cards and a job on CUDA_VISIBLE_DEVICES=2,3 must not both take physical card 2."""
    monkeypatch.setenv("SOTEACHER_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    taken = [devices.acquire_gpu(4) for _ in range(3)]  # cards 0, 1, 2 held by "other jobs"
    try:
        assert taken == [0, 1, 2]
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
        assert devices.acquire_gpu(2, timeout=5) == 1  # visible index 1 = physical card 3, the free one
        assert devices.card_names(2) == ["2", "3"]
        assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == [f"gpu{i}.lock" for i in range(4)]
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f6a/x")
        assert devices.card_names(1) == ["GPU-8f6a_x"]  # a UUID entry, made safe for a file name
    finally:
        while devices._held_locks:
            devices._held_locks.pop().close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_gpus_auto_runs_on_cpu_and_says_so(caplog, monkeypatch):
    monkeypatch.setenv("SOTEACHER_NUM_GPUS", "3")  # the override simulates cards for locking, not for CUDA
    with caplog.at_level(logging.INFO, logger="soteacher.core.devices"):
        assert devices.select_device("auto") == torch.device("cpu")
    assert "device: CPU (no GPU found)" in caplog.text
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        devices.select_device("cuda")


TOY_SNAKEFILE = """
rule all:
    input: expand("out/{i}.txt", i=range(4))

rule train:
    output: "out/{i}.txt"
    resources: gpu=1
    shell: "date +%s.%N > {output}; sleep 2; date +%s.%N >> {output}"
"""


def _max_overlap(work: Path) -> int:
    spans = [[float(x) for x in p.read_text().split()] for p in (work / "out").glob("*.txt")]
    assert len(spans) == 4
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "extra", "expected"),
    [
        ({"SOTEACHER_NUM_GPUS": "2"}, [], "gpu=2"),  # the profile counts the cards
        ({"CUDA_VISIBLE_DEVICES": "0"}, [], "gpu=1"),
        ({"SOTEACHER_NUM_GPUS": "2"}, ["--resources", "gpu=1"], "gpu=1"),  # the command line wins
        ({"CUDA_VISIBLE_DEVICES": ""}, [], None),  # no GPU: no limit, --cores decides
    ],
)
def test_default_profile_runs_at_most_one_gpu_job_per_card(tmp_path, env, extra, expected):
    profile = REPO / "workflow/profiles/default/config.yaml"
    (tmp_path / "workflow/profiles/default").mkdir(parents=True)
    (tmp_path / "workflow/profiles/default/config.yaml").write_text(profile.read_text())
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    run_env = {k: v for k, v in os.environ.items()
               if k not in ("SOTEACHER_NUM_GPUS", "CUDA_VISIBLE_DEVICES") and not k.startswith("SNAKEMAKE_")}
    run_env.update(env, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = ["snakemake", "--workflow-profile", "workflow/profiles/default", "--cores", "4", *extra]
    out = subprocess.run(cmd, cwd=tmp_path, env=run_env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    provided = [line for line in out.stderr.splitlines() if line.startswith("Provided resources")]
    overlap = _max_overlap(tmp_path)
    if expected is None:
        assert not any("gpu" in line for line in provided), provided
        assert overlap > 2  # four jobs on four cores, nothing holds them back
    else:
        name, count = expected.split("=")
        assert any(f'{name}=Resource("{name}", {count})' in line or expected in line for line in provided), provided
        assert overlap == int(count)


@pytest.mark.slow
def test_deterministic_setup_sets_torch_flags_without_importing_inductor():
    # torch.use_deterministic_algorithms imports torch._inductor (1.6 s per job); devices.setup sets the same flags
    flags = python_output(
        "import sys, torch\n"
        "from soteacher.core import devices\n"
        "from tests.helpers import compute\n"
        "devices.setup(compute(threads=1, deterministic=True, device='cpu'))\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " 'torch._inductor' in sys.modules)")
    assert flags == "True True False"


def test_cudnn_benchmark_is_set_only_when_not_deterministic():
    # a flag of torch's, settable without a GPU; deterministic kernels exclude cuDNN's benchmarked choice
    flags = python_output(
        "import torch\n"
        "from soteacher.core import devices\n"
        "from tests.helpers import compute\n"
        "for deterministic in (False, True):\n"
        "    devices.setup(compute(threads=1, device='cpu', deterministic=deterministic, cudnn_benchmark=True))\n"
        "    print(torch.backends.cudnn.benchmark)")
    assert flags.split() == ["True", "False"]
