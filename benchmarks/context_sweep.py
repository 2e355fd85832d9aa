"""Context length as a scaling axis (report 3.3), in miniature: RL with several response-length budgets.

    python benchmarks/context_sweep.py [--budgets 64 128 256 480] [--iterations 12] [--seeds 0 1] [--jobs 2] [--save]

The chapter-4 OMD settings from the shipped warm-up policy, changing only ``max_new_tokens`` (the context
budget for responses), for training and for the held-out evaluation, which logs accuracy, mean length and
the share of tokens spent on the answer line, per difficulty. ``--save`` writes
``kimi_mini/results/context-sweep-cpu.json`` (for chapter 5); with ``--policy DIR``, another warm-up
policy (chapter 5's smaller one), to ``context-sweep-<DIR name>.json``.
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

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "context-sweep-cpu.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 256, 480])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--policy", default=None, help="warm-up policy directory (default: the shipped one)")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    jobs = [
        ("omd", seed, args.iterations, dict(max_new_tokens=b), args.policy)
        for b in args.budgets[::-1]
        for seed in args.seeds
    ]
    settings = asdict(comparison_config("omd", 0, args.iterations))
    result = run_all(jobs, args.jobs, settings, varying=("seed", "max_new_tokens"))
    result["policy"] = Path(args.policy).name if args.policy else "warmup-cpu-tiny"
    if args.save:
        out = RESULT if not args.policy else RESULT.with_name(f"context-sweep-{Path(args.policy).name}.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["runs"]:
        last = [row for row in r["history"] if "eval_accuracy" in row][-1]
        print(
            r["overrides"]["max_new_tokens"],
            r["seed"],
            round(r["seconds"]),
            round(last["eval_accuracy"], 3),
            round(last["eval_tokens"]),
        )
    return result


if __name__ == "__main__":
    main()
