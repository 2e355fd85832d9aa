"""The short-CoT regime (report 2.4 and Table 3) in miniature: a policy trained for short answers against
the long2short policies, at equal token budgets (chapter 7).

    python benchmarks/short_cot.py run [--jobs 2] [--save]
    python benchmarks/short_cot.py search [--jobs 2] [--save]

The short-CoT policy is the report's recipe at this scale: the shipped warm-up fine-tuned on short chains
(:func:`kimi_mini.long2short.short_cot_examples`: the one line of work that hits, then the answer), then
chapter 4's OMD at a tight response limit of :data:`SHORT_BUDGET` tokens, 3 seeds. It shares its ancestor
(the warm-up) with the long-CoT policy, so the two can be merged, as the report merges its long- and
short-CoT models.

Every long2short method starts from the shipped long-CoT policy: the merge with each short-CoT RL policy
(weights :data:`MERGE_WEIGHTS`), shortest rejection sampling and DPO on the long policy's samples
(chapter 7's data and settings, 3 training seeds each), long2short RL at limits :data:`L2S_BUDGETS`
(length penalty from the first iteration, weight 1, 3 seeds), and long2short by distillation with the
short-CoT policy's budget (:func:`prepare_distill`: the long policy's own correct chains on the SFT's
problems, compressed to one line, 3,000 steps; then RL at :data:`SHORT_BUDGET` tokens, 3 seeds). Policies that do not train (long-CoT, the
warm-up, the short-CoT SFT) are sampled with 3 seeds.

Each policy is sampled once per seed on the same 512 held-out problems with a limit of :data:`EVAL_TOKENS`
and scored at every budget in :data:`BUDGETS` by cutting that sample (``heldout_outcomes(..., cut_at=)``:
exactly what the smaller limit would have produced). Finished jobs are cached in ``--cache`` (an
interrupted run resumes); ``--save`` writes ``kimi_mini/results/short-cot-cpu.json`` and ships the seed-0
short-CoT RL policy as ``kimi_mini/checkpoints/short-cot-cpu-tiny``.

``search`` (after ``run``; chapter 8) spends test-time tokens two ways on the same 512 problems, 3 seeds:
best-of-N over short-CoT answers (each seed's short-CoT RL policy, :data:`SEARCH_ANSWERS` samples per
problem at :data:`SHORT_BUDGET` tokens, picked by vote, log-prob or the verifier) and the long-CoT
policy's chains (:data:`SEARCH_CHAINS` per problem at 480 tokens: one chain, and best-of-N by vote or
verifier). ``--save`` writes ``kimi_mini/results/short-cot-search-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import cached, comparison_config, result_header  # noqa: E402
from long2short import DATA_PROBLEMS, DATA_SAMPLES, DATA_SEED, long_samples  # noqa: E402

from kimi_mini.config import RLConfig  # noqa: E402
from kimi_mini.device import set_threads  # noqa: E402
from kimi_mini.long2short import (  # noqa: E402
    SHORT_DIR,
    fine_tune,
    load_long_policy,
    long2short_rl_config,
    merge_policies,
    one_line_examples,
    preference_pairs,
    short_cot_examples,
    shortest_correct,
    train_dpo,
)
from kimi_mini.policy import load_policy, save_policy  # noqa: E402
from kimi_mini.rollout import sample  # noqa: E402
from kimi_mini.rundir import write_atomically  # noqa: E402
from kimi_mini.search import best_of_n  # noqa: E402
from kimi_mini.tasks import heldout_problems, make_problems, prompt_text  # noqa: E402
from kimi_mini.train import heldout_outcomes, train_rl  # noqa: E402
from kimi_mini.warmup import load_warmup_policy, sha256_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "kimi_mini" / "results" / "short-cot-cpu.json"
SEARCH_RESULT = ROOT / "kimi_mini" / "results" / "short-cot-search-cpu.json"
CACHE = Path(__file__).resolve().parent / ".cache" / "short-cot"
SEEDS = (0, 1, 2)
ITERATIONS = 16
#: Short-CoT RL's response limit: every short chain of the warm-up's grammar fits (34-40 tokens).
SHORT_BUDGET = 48
#: The budgets of the comparison; a direct answer (15 tokens) fits in all of them, a short chain from 48 up.
BUDGETS = (16, 32, 48, 64)
#: The sampling limit of the evaluation (the responses are cut at each of BUDGETS).
EVAL_TOKENS = 128
EVAL_PROBLEMS = 512
#: Short-CoT SFT from the warm-up: examples, steps, learning rate, batch size (seed 0).
SFT = dict(examples=8192, seed=5151, steps=3000, lr=2e-3, batch_size=32)
L2S_BUDGETS = (32, 48, 64)
#: Long2short RL run 4 times as long at 48 tokens (16 iterations left 46-62% of responses cut off).
L2S_LONG_BUDGET, L2S_LONG_ITERATIONS = 48, 4 * ITERATIONS
MERGE_WEIGHTS = (0.25, 0.5, 0.75)
#: Chapter 7's settings for shortest rejection sampling and DPO on the long policy's samples.
REJECTION_STEPS, SFT_LR, DPO_STEPS, DPO_LR, BETA = 16, 1e-4, 32, 1e-5, 0.1
#: Test-time search: short-CoT answers and long-CoT chains per problem (best-of-N for N = 1, 2, 4, ...).
SEARCH_ANSWERS, SEARCH_CHAINS = 16, 4


def evaluate(policy, tokenizer, seed: int) -> dict:
    """One sample per held-out problem at EVAL_TOKENS (noise seeded by ``seed``), scored at every budget."""
    cfg = RLConfig(seed=seed)
    return heldout_outcomes(policy, tokenizer, cfg, EVAL_PROBLEMS, max_new_tokens=EVAL_TOKENS, cut_at=BUDGETS)


def sft_dir(cache: Path) -> Path:
    return cache / "short-cot-sft"


def distill_dir(cache: Path) -> Path:
    return cache / "distill-sft"


def short_rl_dir(cache: Path, seed: int) -> Path:
    return cache / f"short-cot-rl-s{seed}"


def train_short_sft(cache: Path) -> dict:
    """The warm-up fine-tuned on short chains, saved to ``sft_dir(cache)``."""
    set_threads(1)
    policy, tokenizer = load_warmup_policy()
    examples = short_cot_examples(SFT["examples"], SFT["seed"])
    start = time.perf_counter()
    losses = fine_tune(policy, tokenizer, examples, SFT["steps"], lr=SFT["lr"], batch_size=SFT["batch_size"])
    save_policy(policy, tokenizer, sft_dir(cache))
    return dict(seconds=time.perf_counter() - start, losses=losses[:: max(1, len(losses) // 100)])


def rl_config(seed: int, budget: int) -> RLConfig:
    return replace(comparison_config("omd", seed, ITERATIONS), max_new_tokens=budget, eval_every=ITERATIONS)


def job(name: str, cache: str) -> dict:
    """Train (if the job trains) and evaluate one policy; the record, also written to ``cache/name.json``."""
    set_threads(1)
    cache = Path(cache)
    kind, *rest = name.split(":")
    seed = int(rest[-1])
    start, record = time.perf_counter(), dict(name=name, kind=kind, seed=seed)
    if kind in ("long-CoT", "warm-up", "short-CoT SFT"):
        loaders = {"long-CoT": load_long_policy, "warm-up": load_warmup_policy}
        policy, tokenizer = loaders[kind]() if kind in loaders else load_policy(sft_dir(cache))
    elif kind == "distill SFT":
        policy, tokenizer = load_policy(distill_dir(cache))
    elif kind in ("short-CoT RL", "distill RL"):
        policy, tokenizer = load_policy(sft_dir(cache) if kind == "short-CoT RL" else distill_dir(cache))
        cfg = rl_config(seed, SHORT_BUDGET)
        with tempfile.TemporaryDirectory() as run_dir:
            record["history"] = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
        if kind == "short-CoT RL":
            save_policy(policy, tokenizer, short_rl_dir(cache, seed))
    elif kind in ("long2short RL", "long2short RL long"):
        policy, tokenizer = load_long_policy()
        budget = int(rest[0])
        cfg = long2short_rl_config(rl_config(seed, 480), max_new_tokens=budget, length_penalty=1.0)
        if kind == "long2short RL long":  # until far fewer responses are cut off
            cfg = replace(cfg, iterations=L2S_LONG_ITERATIONS, eval_every=L2S_LONG_ITERATIONS)
        with tempfile.TemporaryDirectory() as run_dir:
            record["history"] = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
        record["budget"] = budget
    elif kind in ("rejection", "DPO"):
        policy, tokenizer = load_long_policy()
        data = json.loads((cache / "long-samples.json").read_text())
        problems = make_problems(DATA_PROBLEMS, seed=DATA_SEED)
        if kind == "rejection":
            shortest = shortest_correct(problems, data["texts"], data["lengths"], DATA_SAMPLES)
            record["losses"] = fine_tune(policy, tokenizer, shortest, REJECTION_STEPS, lr=SFT_LR, seed=seed)
        else:
            triples = preference_pairs(problems, data["texts"], data["lengths"], DATA_SAMPLES)
            reference, _ = load_long_policy()
            record["losses"] = train_dpo(policy, reference, tokenizer, triples, DPO_STEPS, DPO_LR, BETA, seed=seed)
    elif kind == "merge":
        long_policy, tokenizer = load_long_policy()
        short_policy, _ = load_policy(short_rl_dir(cache, seed))
        record["weight"] = float(rest[0])
        policy = merge_policies(long_policy, short_policy, record["weight"])
    else:
        raise ValueError(f"unknown job {name!r}")
    record["train_seconds"] = time.perf_counter() - start
    record["final"] = evaluate(policy, tokenizer, seed)
    record["seconds"] = time.perf_counter() - start
    write_atomically(cache / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(record) + "\n"))
    print(f"{name:28s} {record['seconds']:6.0f} s  acc@{EVAL_TOKENS} {sum(record['final']['correct']) / 512:.3f}")
    return record


def first_jobs() -> list[str]:
    names = [f"short-CoT RL:{s}" for s in SEEDS]  # first: the merges wait for them
    names += [f"DPO:{s}" for s in SEEDS]  # the longest jobs next
    names += [f"long2short RL:{b}:{s}" for b in L2S_BUDGETS for s in SEEDS]
    names += [f"rejection:{s}" for s in SEEDS]
    names += [f"{kind}:{s}" for kind in ("long-CoT", "warm-up", "short-CoT SFT") for s in SEEDS]
    return names


def distill_jobs() -> list[str]:
    names = [f"{kind}:{s}" for kind in ("distill SFT", "distill RL") for s in SEEDS]
    return names + [f"long2short RL long:{L2S_LONG_BUDGET}:{s}" for s in SEEDS]


def merge_jobs() -> list[str]:
    return [f"merge:{w}:{s}" for w in MERGE_WEIGHTS for s in SEEDS]


def run_jobs(names: list[str], cache: Path, n_jobs: int) -> list[dict]:
    todo = [n for n in names if not (cache / f"{n}.json").exists()]
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        list(pool.map(job, todo, [str(cache)] * len(todo)))
    return [json.loads((cache / f"{n}.json").read_text()) for n in names]


def save_long_samples(cache: Path) -> None:
    set_threads(1)
    long_policy, tokenizer = load_long_policy()
    data = long_samples(long_policy, tokenizer)
    texts = dict(texts=data["texts"], lengths=data["lengths"])
    write_atomically(cache / "long-samples.json", lambda tmp: tmp.write_text(json.dumps(texts) + "\n"))


def _long_chains(half: int, cache: str) -> dict:
    """One long-CoT chain (480 tokens) on each problem of one half of the short-CoT SFT's problems."""
    set_threads(1)
    problems = make_problems(SFT["examples"], seed=SFT["seed"])
    n = len(problems) // 2
    chunk = problems[half * n : (half + 1) * n]
    policy, tokenizer = load_long_policy()
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in chunk], 1, 480, 1.0, seed=SFT["seed"] + half)
    return dict(texts=rollouts.texts, lengths=rollouts.lengths.tolist())


def prepare_distill(cache: Path) -> dict:
    """Long2short by distillation, with the short-CoT SFT's budget: the long-CoT policy samples one chain
    on each of the short-CoT SFT's problems; its correct chains, compressed to the line that hits
    (:func:`one_line_examples`), fine-tune the long-CoT policy with the same steps and learning rate."""
    return cached(cache / "distill.json", lambda: _distill(cache))


def _distill(cache: Path) -> dict:
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        halves = list(pool.map(_long_chains, (0, 1), [str(cache)] * 2))
    texts = halves[0]["texts"] + halves[1]["texts"]
    lengths = halves[0]["lengths"] + halves[1]["lengths"]
    problems = make_problems(SFT["examples"], seed=SFT["seed"])
    examples = one_line_examples(problems, texts)
    sample_seconds = time.perf_counter() - start
    set_threads(1)
    policy, tokenizer = load_long_policy()
    start = time.perf_counter()
    losses = fine_tune(policy, tokenizer, examples, SFT["steps"], lr=SFT["lr"], batch_size=SFT["batch_size"])
    save_policy(policy, tokenizer, distill_dir(cache))
    return dict(
        problems=len(problems),
        examples=len(examples),
        chain_tokens=sum(lengths) / len(lengths),
        sample_seconds=sample_seconds,
        sft_seconds=time.perf_counter() - start,
        losses=losses[:: max(1, len(losses) // 100)],
    )


def prepare(cache: Path) -> dict:
    """The short-CoT SFT policy and the long policy's samples (for rejection sampling and DPO), cached."""
    cache.mkdir(parents=True, exist_ok=True)
    return cached(cache / "prepare.json", lambda: _prepare(cache))


def _prepare(cache: Path) -> dict:
    with ProcessPoolExecutor(max_workers=2) as pool:
        sft = pool.submit(train_short_sft, cache)
        pool.submit(save_long_samples, cache).result()
        return dict(sft=sft.result())


def ship_short_policy(cache: Path, record: dict) -> None:
    """Copy the seed-0 short-CoT RL policy to SHORT_DIR with its training record."""
    if SHORT_DIR.exists():
        shutil.rmtree(SHORT_DIR)
    shutil.copytree(short_rl_dir(cache, 0), SHORT_DIR)
    metrics = dict(
        result_header("one process"),
        recipe=dict(sft=SFT, rl=asdict(rl_config(0, SHORT_BUDGET))),
        history=record["history"],
        sha256=sha256_of(SHORT_DIR / "model.safetensors"),
    )
    (SHORT_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")


def best_of_rules(problems, rollouts, group: int) -> dict:
    """Per-problem 0/1 of best-of-N by each rule and the tokens spent, for N = 1, 2, 4, ... up to ``group``."""
    out = {}
    texts, lengths = rollouts.texts, rollouts.lengths.tolist()
    logprobs = rollouts.logprobs.sum(dim=1).tolist()
    for n in [2**i for i in range(group.bit_length()) if 2**i <= group]:
        keep = [i for i in range(len(texts)) if i % group < n]  # the first n of each problem's samples
        sub = [[v[i] for i in keep] for v in (texts, lengths, logprobs)]
        out[str(n)] = dict(
            tokens=[sum(sub[1][j : j + n]) for j in range(0, len(keep), n)],
            **{rule: best_of_n(problems, sub[0], sub[2], n, rule) for rule in ("vote", "logprob", "verifier")},
        )
    return out


def search_job(kind: str, seed: int, cache: str) -> dict:
    """Best-of-N over one seed's short-CoT answers or the long-CoT policy's chains."""
    return cached(Path(cache) / f"search-{kind}-{seed}.json", lambda: _search_job(kind, seed, cache))


def _search_job(kind: str, seed: int, cache: str) -> dict:
    set_threads(1)
    problems = heldout_problems(EVAL_PROBLEMS, 0)
    prompts = [prompt_text(p) for p in problems]
    start = time.perf_counter()
    if kind == "short-CoT":
        policy, tokenizer = load_policy(short_rl_dir(Path(cache), seed))
        rollouts = sample(policy, tokenizer, prompts, SEARCH_ANSWERS, SHORT_BUDGET, 1.0, seed=seed)
        group = SEARCH_ANSWERS
    else:
        policy, tokenizer = load_long_policy()
        rollouts = sample(policy, tokenizer, prompts, SEARCH_CHAINS, 480, 1.0, seed=seed)
        group = SEARCH_CHAINS
    record = dict(kind=kind, seed=seed, best_of=best_of_rules(problems, rollouts, group))
    record["seconds"] = time.perf_counter() - start
    print(f"search {kind:10s} seed {seed}: {record['seconds']:.0f} s")
    return record


def search(cache: Path, n_jobs: int) -> dict:
    jobs = [(kind, seed) for kind in ("long-CoT", "short-CoT") for seed in SEEDS]
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        runs = list(pool.map(search_job, *zip(*jobs), [str(cache)] * len(jobs)))
    settings = dict(
        seeds=SEEDS, problems=EVAL_PROBLEMS, answers=SEARCH_ANSWERS, chains=SEARCH_CHAINS, short_budget=SHORT_BUDGET
    )
    return dict(result_header(f"{n_jobs} jobs in parallel"), settings=settings, runs=runs)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("run", "search"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    if args.stage == "search":
        result = search(cache, args.jobs)
        if args.save:
            write_atomically(SEARCH_RESULT, lambda tmp: tmp.write_text(json.dumps(result) + "\n"))
        return result
    prep = prepare(cache)
    prep["distill"] = prepare_distill(cache)
    runs = run_jobs(first_jobs(), cache, args.jobs)
    runs += run_jobs(merge_jobs(), cache, args.jobs)
    runs += run_jobs(distill_jobs(), cache, args.jobs)
    settings = dict(
        seeds=SEEDS,
        iterations=ITERATIONS,
        short_budget=SHORT_BUDGET,
        budgets=BUDGETS,
        eval_tokens=EVAL_TOKENS,
        eval_problems=EVAL_PROBLEMS,
        sft=SFT,
        l2s_budgets=L2S_BUDGETS,
        l2s_long=dict(budget=L2S_LONG_BUDGET, iterations=L2S_LONG_ITERATIONS),
        merge_weights=MERGE_WEIGHTS,
        rejection=dict(steps=REJECTION_STEPS, lr=SFT_LR),
        dpo=dict(steps=DPO_STEPS, lr=DPO_LR, beta=BETA),
        data=dict(problems=DATA_PROBLEMS, samples=DATA_SAMPLES, seed=DATA_SEED),
    )
    result = dict(result_header(f"{args.jobs} jobs in parallel"), settings=settings, prepare=prep, runs=runs)
    if args.save:
        write_atomically(RESULT, lambda tmp: tmp.write_text(json.dumps(result) + "\n"))
        ship_short_policy(cache, next(r for r in runs if r["name"] == "short-CoT RL:0"))
    return result


if __name__ == "__main__":
    main()
