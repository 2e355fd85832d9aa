"""The length penalty's warm-up (report 2.3.3) and the four long2short methods (2.4, 3.4), in miniature.

    python benchmarks/long2short.py long [--save]                          # the long-CoT policy (chapter 7)
    python benchmarks/long2short.py warmup [--weights 3] [--seeds 0 1] [--jobs 2] [--save]
    python benchmarks/long2short.py warmup --weights 0.5 1 --seeds 0 1 2 --no-plain --final-problems 512 --save
    python benchmarks/long2short.py methods [--save]

``long`` runs chapter 4's OMD settings for 16 iterations from the shipped warm-up policy and saves the
result, the long-CoT policy chapter 7 shortens, to ``kimi_mini/checkpoints/long-cot-cpu-tiny``.
``warmup`` trains from the warm-up policy with no length penalty and, at each penalty weight, with the penalty
from the first iteration and after 8 iterations of plain RL: ``length-warmup-cpu.json`` for weight 3 alone
(the misspecified weight), ``length-weights-cpu.json`` for other weights. ``--no-plain`` leaves out the run
without a penalty (it is chapter 4's OMD run, ``losses-cpu.json``); ``--final-problems`` adds each run's
per-problem results on that many shared held-out problems.
``methods`` starts every long2short method from the long-CoT policy and evaluates each result on the same
512 held-out problems with the same 480-token budget (``long2short-cpu.json``). Everything runs on one
torch thread per process.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import comparison_config, run_all  # noqa: E402

from kimi_mini.config import RLConfig  # noqa: E402
from kimi_mini.device import set_threads, versions  # noqa: E402
from kimi_mini.long2short import (  # noqa: E402
    LONG_DIR,
    fine_tune,
    load_long_policy,
    long2short_rl_config,
    merge_policies,
    preference_pairs,
    shortest_correct,
    train_dpo,
)
from kimi_mini.policy import save_policy  # noqa: E402
from kimi_mini.rollout import rollout_rewards, sample  # noqa: E402
from kimi_mini.tasks import make_problems, prompt_text  # noqa: E402
from kimi_mini.train import heldout_metrics, train_rl  # noqa: E402
from kimi_mini.warmup import load_warmup_policy, sha256_of  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "kimi_mini" / "results"
#: The held-out evaluation every long2short result gets: 512 problems, the long policy's 480-token budget.
EVAL = RLConfig(eval_problems=512, max_new_tokens=480, seed=0)
#: Problems the long policy samples for rejection sampling and DPO (a seed no RL iteration uses).
DATA_SEED, DATA_PROBLEMS, DATA_SAMPLES = 4242, 256, 8


def _header() -> dict:
    return dict(date=time.strftime("%Y-%m-%d"), machine=f"{platform.machine()}, 1 thread", versions=versions())


def train_long(iterations: int = 16, save: bool = False) -> dict:
    """Chapter 4's OMD settings from the warm-up policy; saved to LONG_DIR with ``save``."""
    set_threads(1)
    policy, tokenizer = load_warmup_policy()
    cfg = replace(comparison_config("omd", 0, iterations), eval_every=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        history = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
    record = dict(_header(), config=asdict(cfg), seconds=time.perf_counter() - start, history=history)
    record["eval"] = heldout_metrics(policy, tokenizer, EVAL)
    if save:
        save_policy(policy, tokenizer, LONG_DIR)
        record["sha256"] = sha256_of(LONG_DIR / "model.safetensors")
        (LONG_DIR / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def warmup_ablation(
    weights: list[float], seeds: list[int], iterations: int, start: int, jobs: int, plain=True, final_problems=0
) -> dict:
    variants = [dict()] if plain else []
    for w in weights:
        variants += [dict(length_penalty=w), dict(length_penalty=w, length_penalty_warmup=start)]
    runs = [("omd", seed, iterations, v, None, final_problems) for seed in seeds for v in variants]
    settings = dict(asdict(comparison_config("omd", 0, iterations)), final_problems=final_problems)
    return run_all(runs, jobs, settings, varying=("seed", "length_penalty", "length_penalty_warmup"))


def _point(method: str, label: str, policy, tokenizer, seconds: float, **details) -> dict:
    metrics = heldout_metrics(policy, tokenizer, EVAL)
    print(f"{method:10s} {label:14s} acc {metrics['eval_accuracy']:.3f} tokens {metrics['eval_tokens']:6.1f}")
    return dict(method=method, label=label, seconds=seconds, **metrics, **details)


def long_samples(policy, tokenizer) -> dict:
    """DATA_SAMPLES responses from the long policy to each of DATA_PROBLEMS training problems."""
    problems = make_problems(DATA_PROBLEMS, seed=DATA_SEED)
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], DATA_SAMPLES, 480, 1.0, seed=DATA_SEED)
    return dict(problems=problems, texts=rollouts.texts, lengths=rollouts.lengths.tolist())


def on_training_problems(policy, tokenizer, problems) -> dict:
    """One sample on each problem the rejection-sampling data came from: does the shortening hold there?"""
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], 1, 480, 1.0, seed=DATA_SEED + 1)
    correct = rollout_rewards(problems, rollouts)
    return dict(train_accuracy=float(correct.mean()), train_tokens=float(rollouts.lengths.float().mean()))


def methods(args) -> dict:
    """Every long2short method from the long policy, evaluated the same way."""
    set_threads(1)
    long_policy, tokenizer = load_long_policy(path=args.long)
    load = lambda: load_long_policy(path=args.long)  # noqa: E731
    warm, _ = load_warmup_policy()
    points = [_point("long-CoT", "long-CoT", long_policy, tokenizer, 0.0)]
    points.append(_point("warm-up", "warm-up (short side)", warm, tokenizer, 0.0))
    for budget in args.budgets:  # the baseline: cut the budget, change nothing else
        short_eval = replace(EVAL, max_new_tokens=budget)
        metrics = heldout_metrics(long_policy, tokenizer, short_eval)
        points.append(dict(method="budget cut", label=f"{budget} tokens", seconds=0.0, budget=budget, **metrics))
    for weight in args.merge_weights:
        start = time.perf_counter()
        merged = merge_policies(long_policy, warm, weight)
        points.append(_point("merge", f"w = {weight}", merged, tokenizer, time.perf_counter() - start, weight=weight))

    start = time.perf_counter()
    data = long_samples(long_policy, tokenizer)
    sample_seconds = time.perf_counter() - start
    shortest = shortest_correct(data["problems"], data["texts"], data["lengths"], DATA_SAMPLES)
    for steps in args.sft_steps:
        policy, _ = load()
        start = time.perf_counter()
        losses = fine_tune(policy, tokenizer, shortest, steps=steps, lr=args.sft_lr, batch_size=32)
        seconds = sample_seconds + time.perf_counter() - start
        on_train = on_training_problems(policy, tokenizer, data["problems"])
        points.append(
            _point("rejection", f"{steps} steps", policy, tokenizer, seconds, steps=steps, losses=losses, **on_train)
        )
    triples = preference_pairs(data["problems"], data["texts"], data["lengths"], DATA_SAMPLES)
    for steps in args.dpo_steps:
        policy, _ = load()
        start = time.perf_counter()
        losses = train_dpo(policy, long_policy, tokenizer, triples, steps, lr=args.dpo_lr, beta=args.beta)
        seconds = sample_seconds + time.perf_counter() - start
        points.append(_point("DPO", f"{steps} steps", policy, tokenizer, seconds, steps=steps, losses=losses))
    for spec in args.rl:  # budget:weight:iterations
        budget, weight, iterations = int(spec.split(":")[0]), float(spec.split(":")[1]), int(spec.split(":")[2])
        policy, _ = load()
        base = replace(comparison_config("omd", 0, iterations), eval_every=iterations)
        cfg = long2short_rl_config(base, max_new_tokens=budget, length_penalty=weight)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            history = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
        seconds = time.perf_counter() - start
        label = f"{budget} tokens, w {weight:g}, {iterations} it"
        points.append(_point("long2short RL", label, policy, tokenizer, seconds, config=asdict(cfg), history=history))
    data_summary = dict(
        problems=DATA_PROBLEMS,
        samples=DATA_SAMPLES,
        seed=DATA_SEED,
        sample_seconds=sample_seconds,
        sft_examples=len(shortest),
        sft_mean_tokens=sum(len(r) + 1 for _, r in shortest) / len(shortest),
        dpo_pairs=len(triples),
        mean_sample_tokens=sum(data["lengths"]) / len(data["lengths"]),
        **on_training_problems(long_policy, tokenizer, data["problems"]),
    )
    settings = dict(
        eval=asdict(EVAL),
        sft_lr=args.sft_lr,
        dpo_lr=args.dpo_lr,
        beta=args.beta,
    )
    return dict(_header(), settings=settings, data=data_summary, points=points)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("long", "warmup", "methods"))
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--weights", type=float, nargs="+", default=[3.0], help="warmup: the penalty's weights")
    parser.add_argument("--no-plain", action="store_true", help="warmup: leave out the run without a penalty")
    parser.add_argument("--final-problems", type=int, default=0, help="warmup: per-problem held-out results")
    parser.add_argument("--start", type=int, default=8, help="warmup: iterations of plain RL first")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--merge-weights", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--sft-steps", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--sft-lr", type=float, default=1e-4)
    parser.add_argument("--dpo-steps", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--dpo-lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument(
        "--rl", nargs="+", default=["128:1:8", "192:1:16"], help="long2short RL runs, budget:weight:iterations"
    )
    parser.add_argument("--long", default=str(LONG_DIR), help="methods: the long-CoT policy directory")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    if args.stage == "long":
        result = train_long(args.iterations, save=args.save)
        print(round(result["seconds"]), result["eval"])
        return result
    if args.stage == "warmup":
        result = warmup_ablation(
            args.weights, args.seeds, args.iterations, args.start, args.jobs, not args.no_plain, args.final_problems
        )
        name = "length-warmup-cpu.json" if args.weights == [3.0] else "length-weights-cpu.json"
        for r in result["runs"]:
            last = [row for row in r["history"] if "eval_accuracy" in row][-1]
            print(r["seed"], r["overrides"], round(r["seconds"]), round(last["eval_accuracy"], 3), last["eval_tokens"])
    else:
        result = methods(args)
        name = "long2short-cpu.json"
    if args.save:
        (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
