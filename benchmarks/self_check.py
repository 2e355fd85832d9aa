"""The self-check caveat (chapter 8): how much do a chain and a short answer lean on reading the target next
to every result?

    python benchmarks/self_check.py run [--jobs 2] [--save]

In the book's grammar every check writes the target next to the result (``6*1=6 vs 6!``). Here each policy
is fine-tuned two ways with the same steps, data and learning rate: on traces in that grammar (the
control) and on the same traces with every `` vs target`` removed (:func:`kimi_mini.tasks.without_targets`:
``6*1=6!``), so each check must recall the target stated once in the prompt. The long-CoT policy is
fine-tuned on search traces (no guesses), the short-CoT policy (seed 0) on one-line traces. Each of the four
is then sampled on the same 512 held-out problems with 3 seeds: :data:`CHAINS` chains per problem at 480
tokens for the long policies, :data:`ANSWERS` answers at 48 tokens for the short ones, scored alone and as
best-of-N by vote, log-prob and verifier. Finished pieces are cached in ``--cache``; ``--save`` writes
``kimi_mini/results/self-check-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import cached, result_header  # noqa: E402
from short_cot import best_of_rules  # noqa: E402

from kimi_mini.device import set_threads  # noqa: E402
from kimi_mini.long2short import fine_tune, load_long_policy, load_short_policy  # noqa: E402
from kimi_mini.policy import load_policy, save_policy  # noqa: E402
from kimi_mini.rollout import sample  # noqa: E402
from kimi_mini.rundir import write_atomically  # noqa: E402
from kimi_mini.tasks import (  # noqa: E402
    heldout_problems,
    make_problems,
    prompt_text,
    search_trace,
    short_trace,
    without_targets,
)

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "self-check-cpu.json"
CACHE = Path(__file__).resolve().parent / ".cache" / "self-check"
SEEDS = (0, 1, 2)
#: Fine-tuning: examples (problems of a seed no other data uses), steps, learning rate, batch size.
TUNE = dict(examples=8192, seed=6161, steps=600, lr=5e-4, batch_size=32)
CHAINS, ANSWERS, EVAL_PROBLEMS = 2, 4, 512
#: Arm -> (start policy, trace writer, response limit).
ARMS = {
    "long, target at each check": ("long", search_trace, 480),
    "long, target recalled": ("long", search_trace, 480),
    "short, target at each check": ("short", short_trace, 48),
    "short, target recalled": ("short", short_trace, 48),
}


def examples(arm: str) -> list[tuple[str, str]]:
    _, trace, _ = ARMS[arm]
    rng = random.Random(TUNE["seed"])
    out = []
    for problem in make_problems(TUNE["examples"], seed=TUNE["seed"]):
        response = trace(problem, rng)
        out.append((prompt_text(problem), without_targets(response) if "recalled" in arm else response))
    return out


def arm_dir(cache: str, arm: str) -> Path:
    """Where an arm's fine-tuned policy is saved."""
    return Path(cache) / arm.replace(", ", "-").replace(" ", "-")


def tune(arm: str, cache: str) -> dict:
    """Fine-tune one arm's start policy on its traces; saved to ``arm_dir(cache, arm)``."""
    return cached(arm_dir(cache, arm) / "tune.json", lambda: _tune(arm, arm_dir(cache, arm)))


def _tune(arm: str, out: Path) -> dict:
    set_threads(1)
    start_policy, _, _ = ARMS[arm]
    policy, tokenizer = load_long_policy() if start_policy == "long" else load_short_policy()
    start = time.perf_counter()
    losses = fine_tune(policy, tokenizer, examples(arm), TUNE["steps"], lr=TUNE["lr"], batch_size=TUNE["batch_size"])
    save_policy(policy, tokenizer, out)
    return dict(arm=arm, seconds=time.perf_counter() - start, losses=losses[:: max(1, len(losses) // 60)])


def evaluate(arm: str, seed: int, cache: str) -> dict:
    """``CHAINS`` or ``ANSWERS`` samples per held-out problem; best-of-N by every rule."""
    return cached(Path(cache) / f"eval-{arm}-{seed}.json", lambda: _evaluate(arm, seed, cache))


def _evaluate(arm: str, seed: int, cache: str) -> dict:
    set_threads(1)
    _, _, limit = ARMS[arm]
    policy, tokenizer = load_policy(arm_dir(cache, arm))
    problems = heldout_problems(EVAL_PROBLEMS, 0)
    n = CHAINS if limit == 480 else ANSWERS
    start = time.perf_counter()
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], n, limit, 1.0, seed=seed)
    record = dict(arm=arm, seed=seed, best_of=best_of_rules(problems, rollouts, n), seconds=time.perf_counter() - start)
    print(f"{arm:30s} seed {seed}: {record['seconds']:.0f} s")
    return record


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("run",))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    arms = list(ARMS)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        tuned = list(pool.map(tune, arms, [args.cache] * len(arms)))
        jobs = [(arm, seed) for arm in arms for seed in SEEDS]
        runs = list(pool.map(evaluate, *zip(*jobs), [args.cache] * len(jobs)))
    settings = dict(tune=TUNE, chains=CHAINS, answers=ANSWERS, problems=EVAL_PROBLEMS, seeds=SEEDS)
    result = dict(result_header(f"{args.jobs} jobs in parallel"), settings=settings, tuned=tuned, runs=runs)
    if args.save:
        write_atomically(RESULT, lambda tmp: tmp.write_text(json.dumps(result) + "\n"))
    return result


if __name__ == "__main__":
    main()
