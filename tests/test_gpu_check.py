"""benchmarks/gpu.py in its tiny CPU form: the GPU check's code paths, end to end, in seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_the_cpu(tmp_path):
    out = tmp_path / "gpu-check-cpu-tiny.json"
    env = {**os.environ, "KIMI_MINI_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--tiny", "--out", str(out)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    record = json.loads(out.read_text())
    assert record["tiny"] and record["versions"]["device"] == "cpu" and record["versions"]["trl"]
    assert {"date", "machine", "warmup", "sampler", "rl", "trl"} <= set(record)
    assert record["warmup"]["steps"] == 20 and record["warmup"]["final_loss"] < record["warmup"]["first_loss"]
    sampler = record["sampler"]
    assert (
        sampler["sampler"]["tokens"] > 0 and sampler["generate"]["tokens"] > 0 and sampler["sampler_over_generate"] > 0
    )
    rl = record["rl"]
    assert rl["config"]["partial_rollouts"] and rl["trained_iterations"] >= 1
    assert any("reused_share" in row for row in rl["iterations"])  # segments carried over and trained on
    assert "eval_accuracy" in rl["iterations"][-1]
    trl = record["trl"]
    assert trl["model"] == "Qwen2ForCausalLM" and len(trl["step_seconds"]) == trl["settings"]["steps"]
    assert record["seconds"] > 0  # the time is recorded (the 120 s subprocess limit bounds it)
