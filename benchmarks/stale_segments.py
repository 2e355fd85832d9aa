"""Partial rollouts: leave the stale segments out of the loss, or train on them? (report 2.6.2)

    python benchmarks/stale_segments.py [--iterations 12] [--seeds 0 1 2] [--segment 64] [--jobs 2] [--save]

The chapter-4 OMD settings with partial rollouts (``segment`` new tokens per trajectory per iteration),
once with ``mask_stale_segments=True`` (the report's choice: only this iteration's tokens count in the
loss; slime's --mask-offpolicy-in-partial-rollout) and once with ``False`` (every segment counts, with the
log-probs of the iteration that sampled it as the "old" ones; verl's fully asynchronous mode), from the
same warm-up policy and seeds. Both ways run twice: with ``wait_for_group=True`` (a group enters the loss
when its last trajectory ends, so early finishers are mostly stale by then) and ``False`` (each trajectory
enters the loss in the iteration it ends, with the batch-mean baseline of everything that ended then).
After training, every run answers the same ``--final-problems`` held-out problems once, stored per problem.
``--save`` writes ``kimi_mini/results/stale-segments-cpu.json`` (chapter 6).
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

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "stale-segments-cpu.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--final-problems", type=int, default=512)
    parser.add_argument("--segment", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    variants = [
        dict(partial_rollouts=True, segment_tokens=args.segment, mask_stale_segments=m, wait_for_group=w)
        for w in (True, False)
        for m in (True, False)
    ]
    jobs = [("omd", seed, args.iterations, v, None, args.final_problems) for seed in args.seeds for v in variants]
    settings = asdict(comparison_config("omd", 0, args.iterations, partial_rollouts=True, segment_tokens=args.segment))
    settings["final_problems"] = args.final_problems
    result = run_all(jobs, args.jobs, settings, varying=("seed", "mask_stale_segments", "wait_for_group"))
    if args.save:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["runs"]:
        acc = [row["eval_accuracy"] for row in r["history"] if "eval_accuracy" in row]
        o = r["overrides"]
        print(r["seed"], o["wait_for_group"], o["mask_stale_segments"], round(r["seconds"]), [round(a, 3) for a in acc])
    return result


if __name__ == "__main__":
    main()
