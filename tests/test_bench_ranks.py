"""The multi-rank benches run for real, a few steps on CPU: 1 process and 2 gloo ranks under torchrun."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, subprocess_env


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:  # 2 ranks: ~25 s on 2 cores
    env = subprocess_env()
    env.pop("SOTEACHER_RANKS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "pipeline_src"), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_bench_ranks_prints_both_throughputs_and_a_positive_scaling_efficiency():
    out = _bench("bench.bench_ranks", "--steps", "2", "--warmup", "1", "--batch-size", "8")
    assert out.returncode == 0, out.stderr[-4000:]
    assert "weak scaling: per-rank batch 8, global batch 8 x N" in out.stdout
    assert "N ranks x T threads > C oversubscribes" in out.stdout
    one = re.search(r"^1 process: ([\d.]+) images/s \(.*batch 8;", out.stdout, re.M)
    two = re.search(r"^2 ranks: ([\d.]+) images/s \(.*global batch 16;", out.stdout, re.M)
    efficiency = re.search(r"^ranks_scaling_efficiency .*: ([\d.]+) \(target ", out.stdout, re.M)
    assert one and two and efficiency, out.stdout
    assert float(one[1]) > 0 and float(two[1]) > 0 and float(efficiency[1]) > 0


@pytest.mark.slow
def test_bench_gpu_epoch_with_two_gpus_runs_as_two_cpu_ranks_without_a_gpu():
    out = _bench("bench.bench_gpu_epoch", "--gpus", "2", "--device", "cpu", "--steps", "1", "--warmup", "1",
                 "--batch-size", "4", "--amp", "none", timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "--gpus 2 means 2 CPU ranks (gloo)" in out.stdout
    for who in ("teacher resnet32x4 (soteacher)", "student resnet8x4 (KD)"):
        found = re.search(rf"^{re.escape(who)}: 1 CPU rank [\d.]+ ms/step \(global batch 4\), 240 epochs = [\d.]+ min; "
                          r"2 CPU ranks [\d.]+ ms/step \(global batch 8\), 240 epochs = [\d.]+ min; "
                          r"scaling efficiency ([\d.]+)", out.stdout, re.M)
        assert found and float(found[1]) > 0, out.stdout
