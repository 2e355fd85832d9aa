"""How far the warm-up's first 100 steps agree when torch uses other CPU kernels, in one run.

    python benchmarks/cpu_kernels.py [--steps 100] [--every 10] [--save]

torch picks its vectorised kernels (softmax, log-softmax, reductions, element-wise ops) for the CPU it
runs on: ``DEFAULT`` (no vectorisation), ``AVX2`` or ``AVX512`` on x86-64. They sum in other orders, so
their results differ in the last bits of float32. ``ATEN_CPU_CAPABILITY`` picks one at start-up (it can
only lower the capability), so each replay runs in its own process. Every replay trains the cpu-tiny
warm-up from the same seed and logs the mean loss of every ``--every`` steps. Writes a JSON summary to
stdout; ``--save`` also stores it, with the date and machine, as ``kimi_mini/results/cpu-kernels.json``,
which chapter 1 reads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPABILITIES = ("default", "avx2", "avx512")


def replay(steps: int, every: int) -> dict:
    """The warm-up's first ``steps`` steps under this process's kernels: their capability and losses."""
    from dataclasses import replace

    import torch

    from kimi_mini.config import get_preset
    from kimi_mini.policy import build_policy
    from kimi_mini.sft import train_sft
    from kimi_mini.tokenizer import build_char_tokenizer

    torch.set_num_threads(1)
    cfg = get_preset("cpu-tiny")
    tokenizer = build_char_tokenizer()
    torch.manual_seed(cfg.sft.seed)
    model = build_policy(cfg.model, tokenizer)
    sft = replace(cfg.sft, log_every=every)
    metrics = train_sft(model, tokenizer, sft, cfg.task, progress=False, stop_after=steps)
    history = [dict(step=h["step"], loss=h["loss"]) for h in metrics["history"]]
    return dict(capability=torch.backends.cpu.get_cpu_capability(), history=history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # run from a clone without installing
    if args.child:
        print(json.dumps(replay(args.steps, args.every)))
        return
    from kimi_mini.device import versions

    runs = {}
    for capability in CAPABILITIES:
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "KIMI_MINI_THREADS": "1"}
        command = [sys.executable, __file__, "--child", f"--steps={args.steps}", f"--every={args.every}"]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        run = json.loads(out.strip().splitlines()[-1])
        runs.setdefault(run["capability"], run["history"])  # a CPU without AVX512 runs AVX2 twice
    record = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 thread",
        versions=versions(),
        steps=args.steps,
        every=args.every,
        runs=runs,
    )
    print(json.dumps(record, indent=1))
    if args.save:
        path = ROOT / "kimi_mini" / "results" / "cpu-kernels.json"
        path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
