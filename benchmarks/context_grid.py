"""Training budget against evaluation budget, and two warm-ups without mode choice (report 3.3; chapter 5).

    python benchmarks/context_grid.py run [--only GROUP ...] [--seeds 0 1 2] [--jobs 2]
    python benchmarks/context_grid.py save

``run`` trains chapter 4's OMD settings (16 iterations unless said otherwise, from a warm-up policy) with
a response budget of 64, 128, 256 or 480 tokens, and afterwards samples each trained policy once on the
same 512 held-out problems with a 480-token limit. The sampler draws every row's noise at every step, so a
response is the same whatever the limit, only cut earlier: the 480-token sample of a problem gives its
outcome at every smaller evaluation budget too (``correct_at``: the response cut there and verified
again). One sample thus fills a whole row of the train-budget x eval-budget grid, paired by problem.

The policies trained (:data:`GROUPS`): the shipped warm-up (half guesses, half searches; budgets 64 to
480), the search-only warm-up (no guesses; budgets 128 and 480), the first-candidate warm-up (searches that
check one candidate and answer, never backtracking; budget 480, with 16 and with 64 iterations) and the
smaller ``cpu-small`` policy (2.4 times fewer parameters, the shipped warm-up's data; budgets 128 and
480). Train the two new warm-ups first with ``kimi-mini warmup --preset cpu-tiny-search-only`` (and
``cpu-tiny-first-candidate``) ``--out kimi_mini/checkpoints/warmup-PRESET --replace-shipped``.

Each finished run is written to ``--cache`` at once (an interrupted sweep resumes where it stopped; two
``run`` commands with different ``--only`` share the cores); ``save`` evaluates every warm-up before RL
(seeds 0-2, 480 tokens) and writes everything to ``kimi_mini/results/context-grid-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import comparison_config, result_header, run_one  # noqa: E402

from kimi_mini.device import set_threads  # noqa: E402
from kimi_mini.rundir import SHIPPED_WARMUPS, write_atomically  # noqa: E402
from kimi_mini.train import heldout_outcomes  # noqa: E402
from kimi_mini.warmup import load_warmup_policy  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "context-grid-cpu.json"
ITERATIONS, FINAL_PROBLEMS, FINAL_BUDGET = 16, 512, 480
#: The smaller evaluation budgets, scored on the same 480-token samples (``correct_at``).
CUT_AT = (64, 96, 128, 192, 256, 384)
#: Group -> (warm-up preset, training budgets, iterations).
GROUPS = {
    "grid": ("cpu-tiny", (480, 256, 128, 64), ITERATIONS),
    "search-only": ("cpu-tiny-search-only", (480, 128), ITERATIONS),
    "first-candidate": ("cpu-tiny-first-candidate", (480,), ITERATIONS),
    "first-candidate-long": ("cpu-tiny-first-candidate", (480,), 4 * ITERATIONS),
    "small": ("cpu-small", (480, 128), ITERATIONS),
}


def job_name(preset: str, budget: int, seed: int, iterations: int = ITERATIONS) -> str:
    return f"{preset}-b{budget}-s{seed}" + (f"-i{iterations}" if iterations != ITERATIONS else "")


def run_job(preset: str, budget: int, seed: int, iterations: int, cache: str) -> str:
    """Train one run and write it to ``cache``; the run's record (see compare_losses.run_one) plus its warm-up."""
    record = run_one(
        "omd",
        seed,
        iterations,
        dict(max_new_tokens=budget),
        str(SHIPPED_WARMUPS[preset]),
        FINAL_PROBLEMS,
        final_budget=FINAL_BUDGET,
        cut_at=CUT_AT,
    )
    path = Path(cache) / f"{job_name(preset, budget, seed, iterations)}.json"
    text = json.dumps(dict(record, warmup=preset, iterations=iterations)) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))
    return path.name


def all_jobs(groups, seeds) -> list[tuple[str, int, int, int]]:
    return [(GROUPS[g][0], b, s, GROUPS[g][2]) for g in groups for b in GROUPS[g][1] for s in seeds]


def run(args) -> None:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    groups = args.only or list(GROUPS)
    jobs = [
        (*job, str(cache)) for job in all_jobs(groups, args.seeds) if not (cache / f"{job_name(*job)}.json").exists()
    ]
    print(f"{len(jobs)} runs to do", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name in pool.map(run_job, *zip(*jobs)) if jobs else []:
            print(time.strftime("%H:%M:%S"), name, flush=True)


def warmup_outcomes(preset: str, seed: int) -> dict:
    """The warm-up policy itself on the 512 shared problems (480 tokens), sampling noise from ``seed``."""
    set_threads(1)
    policy, tokenizer = load_warmup_policy("cpu", SHIPPED_WARMUPS[preset])
    cfg = comparison_config("omd", seed, ITERATIONS)
    return heldout_outcomes(policy, tokenizer, cfg, FINAL_PROBLEMS, max_new_tokens=FINAL_BUDGET, cut_at=CUT_AT)


def save(args) -> dict:
    cache = Path(args.cache)
    runs = []
    for preset, budget, seed, iterations in all_jobs(GROUPS, args.seeds):
        path = cache / f"{job_name(preset, budget, seed, iterations)}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `context_grid.py run` first")
        runs.append(dict(json.loads(path.read_text()), iterations=iterations))
    presets = dict.fromkeys(g[0] for g in GROUPS.values())
    warmups = [dict(warmup=p, seed=s, final=warmup_outcomes(p, s)) for p in presets for s in args.seeds]
    settings = asdict(comparison_config("omd", 0, ITERATIONS))
    result = dict(
        **result_header("runs in parallel"),
        settings={k: v for k, v in settings.items() if k not in ("seed", "max_new_tokens")},
        final_problems=FINAL_PROBLEMS,
        final_budget=FINAL_BUDGET,
        runs=runs,
        warmups=warmups,
    )
    RESULT.write_text(json.dumps(result, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {RESULT} ({RESULT.stat().st_size / 1e6:.1f} MB, {len(runs)} runs)")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "save"))
    parser.add_argument("--only", nargs="+", choices=tuple(GROUPS), help="run only these groups")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default=str(Path(__file__).resolve().parent / ".cache" / "context-grid"))
    args = parser.parse_args(argv)
    run(args) if args.command == "run" else save(args)


if __name__ == "__main__":
    main()
