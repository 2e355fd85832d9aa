"""Which problems to train on (report 2.3.4): uniform, curriculum and prioritized sampling from one pool.

    python benchmarks/samplers.py [--iterations 16] [--seeds 0 1] [--jobs 2] [--save]

Chapter 4's OMD settings from the shipped warm-up policy; every run draws its 16 problems per iteration
from the same pool of 512 training problems, and only ``RLConfig.sampling`` changes (plus one uniform run
with the guess filter, which first drops the problems the warm-up policy answers right without
reasoning). Curriculum trains on every problem for 8 iterations, then on hard ones only (the report's
Fig. 9). ``--save`` writes ``kimi_mini/results/samplers-cpu.json`` (chapter 8).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import comparison_config, run_all  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "samplers-cpu.json"
VARIANTS = [
    dict(sampling="uniform"),
    dict(sampling="curriculum"),
    dict(sampling="prioritized"),
    dict(sampling="uniform", guess_filter=True),
]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    jobs = [("omd", seed, args.iterations, v) for seed in args.seeds for v in VARIANTS]
    settings = asdict(comparison_config("omd", 0, args.iterations, sampling="uniform"))
    result = run_all(jobs, args.jobs, settings, varying=("seed", "sampling", "guess_filter"))
    if args.save:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["runs"]:
        last = [row for row in r["history"] if "eval_accuracy" in row][-1]
        print(
            r["seed"], r["overrides"], round(r["seconds"]), round(last["eval_accuracy"], 3), round(last["eval_tokens"])
        )
    return result


if __name__ == "__main__":
    main()
