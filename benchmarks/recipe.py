"""The whole recipe of chapter 9 on the CPU, from scratch, stored for the chapter.

    python benchmarks/recipe.py --out RUN_DIR [--save]

Runs ``kimi_mini.recipe.run_recipe(recipe_config("cpu-tiny"))`` (warm-up SFT from random weights, RL with
every switch of chapters 4-8, long2short by rejection sampling) on one torch thread, resuming in
``RUN_DIR`` if it was interrupted. ``--save`` stores the results table, the RL metrics and the machine
as ``kimi_mini/results/recipe-cpu.json``, which chapter 9 reads. The same as
``kimi-mini recipe --out RUN_DIR --resume --threads 1``, plus the RL history in the stored file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing
from kimi_mini.device import set_threads, versions  # noqa: E402
from kimi_mini.recipe import recipe_config, run_recipe  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "recipe-cpu.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run directory (kept: rerunning resumes)")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    set_threads(1)
    result = run_recipe(recipe_config("cpu-tiny"), args.out, resume=True, progress=False)
    history = [json.loads(line) for line in (Path(args.out) / "rl" / "metrics.jsonl").read_text().splitlines()]
    record = dict(
        date=time.strftime("%Y-%m-%d"), machine=f"{platform.machine()}, 1 thread", versions=versions(), **result
    )
    record["rl_history"] = history
    made = json.loads((Path(args.out) / "warmup" / "metrics.json").read_text())
    record["warmup_sha256"] = made["sha256"]  # equal to the shipped warm-up's: the stage reproduces it
    for row in result["stages"]:
        print(
            f"{row['stage']:10s} acc {row['eval_accuracy']:.3f} tokens {row['eval_tokens']:6.1f} {row['seconds']:7.0f} s"
        )
    if args.save:
        RESULT.write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
