"""OMD, REINFORCE, GRPO and ReST from the same warm-up policy, on the same samples budget (report 3.5, Fig. 10).

    python benchmarks/compare_losses.py [--iterations 16] [--seeds 0 1 2] [--jobs 2] [--save]
    python benchmarks/compare_losses.py --taus 0.1 0.3 3 [--save]   # OMD's tau sweep


Every run starts from the shipped warm-up policy and differs from the others only in ``RLConfig.loss``:
the same problems, the same number of samples per iteration, the same optimizer and learning rate, the same
number of gradient steps. With the same seed, iteration 0 of every run samples exactly the same responses
(the policy is still the warm-up one); after that each run samples from its own policy.
After training, each run answers the same ``--final-problems`` held-out problems once (the same problems for
every seed, sampling noise from the seed), stored per problem for chapter 4's intervals.
With ``--taus``, the runs are OMD at each tau instead (tau = 1 is the loss comparison's OMD run).
Runs go to ``--jobs`` worker processes of one torch thread each. Prints a JSON summary; ``--save`` stores
it, with the date, machine and versions, as ``kimi_mini/results/losses-cpu.json`` (``tau-sweep-cpu.json``
with ``--taus``), which chapter 4 reads.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing
from kimi_mini.config import LOSSES, RLConfig
from kimi_mini.device import set_threads, versions
from kimi_mini.rundir import write_atomically
from kimi_mini.train import heldout_outcomes, train_rl
from kimi_mini.warmup import load_warmup_policy

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "losses-cpu.json"
TAU_RESULT = RESULT.with_name("tau-sweep-cpu.json")


def comparison_config(loss: str, seed: int, iterations: int, **overrides) -> RLConfig:
    """The chapter-4 settings; only the loss and the seed change between runs (and ``overrides``)."""
    return RLConfig(
        iterations=iterations, loss=loss, seed=seed, eval_every=2, eval_problems=128, checkpoint_every=1000, **overrides
    )


def run_one(
    loss: str,
    seed: int,
    iterations: int,
    overrides: dict | None = None,
    policy_dir: str | None = None,
    final_problems: int = 0,
    final_budget: int | None = None,
    cut_at: tuple[int, ...] = (),
) -> dict:
    set_threads(1)
    policy, tokenizer = load_warmup_policy("cpu", policy_dir) if policy_dir else load_warmup_policy()
    cfg = comparison_config(loss, seed, iterations, **(overrides or {}))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        history = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
    record = dict(loss=loss, seed=seed, overrides=overrides or {}, seconds=time.perf_counter() - start)
    if final_problems:
        record["final"] = heldout_outcomes(
            policy, tokenizer, cfg, final_problems, max_new_tokens=final_budget, cut_at=cut_at
        )
    return dict(record, history=history)


def cached(path: Path, compute) -> dict:
    """The JSON in ``path``, or ``compute()`` written there atomically (an interrupted sweep resumes)."""
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    text = json.dumps(value) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))
    return value


def result_header(parallel: str) -> dict:
    """The date, machine and versions a stored result records; ``parallel`` says how its runs shared the CPU."""
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, {parallel}, 1 thread each"
    return dict(date=time.strftime("%Y-%m-%d"), machine=machine, versions=versions())


def run_all(jobs: list[tuple], n_jobs: int, settings: dict, varying: tuple[str, ...]) -> dict:
    """Run ``run_one(*job)`` for every job in ``n_jobs`` processes; the result, with the shared settings."""
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        runs = list(pool.map(run_one, *zip(*jobs)))
    return dict(
        **result_header(f"{n_jobs} runs in parallel"),
        settings={key: value for key, value in settings.items() if key not in varying},
        runs=runs,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--taus", type=float, nargs="+", help="OMD at each tau instead of the loss comparison")
    parser.add_argument("--final-problems", type=int, default=512)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--save", action="store_true", help=f"write {RESULT.relative_to(RESULT.parents[2])}")
    args = parser.parse_args(argv)
    n = args.final_problems
    if args.taus:
        jobs = [("omd", seed, args.iterations, dict(tau=tau), None, n) for seed in args.seeds for tau in args.taus]
        varying, out = ("loss", "seed", "tau"), TAU_RESULT
    else:
        jobs = [(loss, seed, args.iterations, None, None, n) for seed in args.seeds for loss in args.losses]
        varying, out = ("loss", "seed"), RESULT
    settings = asdict(comparison_config("omd", 0, args.iterations))
    result = run_all(jobs, args.jobs, dict(settings, final_problems=n), varying=varying)
    text = json.dumps(result, indent=1)
    if args.save:
        out.write_text(text + "\n")
    print(json.dumps([dict(loss=r["loss"], seed=r["seed"], seconds=round(r["seconds"])) for r in result["runs"]]))
    return result


if __name__ == "__main__":
    main()
