"""Step-level tree search over the long-CoT policy's own steps, against one long chain (chapter 8).

    python benchmarks/tree_search.py run [--problems 512] [--seeds 0 1 2] [--budgets 128 160 192 256 384 0] [--save]

On the held-out problems of ``heldout_problems(512, 0)``, with the shipped long-CoT policy scoring the steps
(:mod:`kimi_mini.tree_search`): best-first search with the exact verifier at the leaves or with no verifier
(the policy's score only), and MCTS (PUCT) with leaf values from the verifier or from the policy's own check,
with the policy's priors (temperature 1) and with flattened priors (:data:`FLAT_PRIOR`), and with the
verifier as an MCTS-Solver (a leaf proven a miss is never selected again). Each search runs at
token budgets ``--budgets`` (0: none, the whole tree fits) chosen around one chain's ~127 tokens; one long
chain per problem (sampled, :data:`CHAIN_TOKENS` max) is the baseline. Per problem and seed: correct (0/1)
and generated tokens, so ``kimi_mini.stats`` intervals pair by problem. Best-first is deterministic (one
row); MCTS's seed only breaks exact ties (the result says whether the seeds gave identical outcomes).

Finished pieces are cached in ``--cache`` under the policy's checksum (an interrupted run resumes): the
scored trees per 64 problems, each chain seed, each (method, budget, seed). ``--save`` writes
``kimi_mini/results/tree-search-cpu.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import cached, result_header  # noqa: E402

from kimi_mini.device import set_threads  # noqa: E402
from kimi_mini.long2short import LONG_DIR, load_long_policy  # noqa: E402
from kimi_mini.rollout import sample  # noqa: E402
from kimi_mini.rundir import sha256_of, write_atomically  # noqa: E402
from kimi_mini.tasks import HELDOUT_SEED, heldout_problems, prompt_text, verify  # noqa: E402
from kimi_mini.tree_search import ANSWER_TOKENS, best_first, mcts, score_trees, tree_from_scores  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "tree-search-cpu.json"
CACHE = Path(__file__).resolve().parent / ".cache" / "tree-search"
CHAIN_TOKENS = 480
CHUNK = 64
#: The prior temperature of the flat-prior MCTS: divides the ~25-nat gaps of the grammar's fixed order by 10.
FLAT_PRIOR = 10.0
#: Method -> (search, keyword arguments, deterministic).
METHODS = {
    "best-first, verifier": (best_first, dict(leaf_check=True), True),
    "best-first, policy score": (best_first, dict(leaf_check=False), True),
    "mcts, verifier": (mcts, dict(leaf_value="verifier"), False),
    "mcts, policy check": (mcts, dict(leaf_value="policy_check"), False),
    "mcts, verifier, flat prior": (mcts, dict(leaf_value="verifier", prior_temperature=FLAT_PRIOR), False),
    "mcts, policy check, flat prior": (mcts, dict(leaf_value="policy_check", prior_temperature=FLAT_PRIOR), False),
    "mcts solver, verifier": (mcts, dict(leaf_value="verifier", solver=True), False),
    "mcts solver, verifier, flat prior": (
        mcts,
        dict(leaf_value="verifier", solver=True, prior_temperature=FLAT_PRIOR),
        False,
    ),
}


@functools.cache
def long_policy():
    """The shipped long-CoT policy, loaded once and only if a piece is missing from the cache."""
    return load_long_policy()


def tree_scores(policy, tokenizer, problems) -> dict:
    """The scored trees of ``problems`` as lists (for the cache), and the seconds it took."""
    start = time.process_time()
    trees = score_trees(policy, tokenizer, problems)
    rows = [
        dict(
            first=[s.logprob for s in t.firsts],
            tries=[[leaf.logprob for leaf in g] for g in t.tries],
            hits=[[leaf.hit_logprob for leaf in g] for g in t.tries],
            first_tokens=[s.tokens for s in t.firsts],
            try_tokens=[[leaf.tokens for leaf in g] for g in t.tries],
        )
        for t in trees
    ]
    return dict(rows=rows, seconds=time.process_time() - start)


def load_trees(problems, cache: Path) -> tuple[list, float]:
    """Every problem's scored tree, ``CHUNK`` problems per cached piece; the CPU seconds of the scoring."""
    trees, seconds = [], 0.0
    for start in range(0, len(problems), CHUNK):
        chunk = problems[start : start + CHUNK]
        piece = cached(
            cache / f"trees-{start}-{start + len(chunk)}.json", lambda c=chunk: tree_scores(*long_policy(), c)
        )
        trees += [tree_from_scores(p, **row) for p, row in zip(chunk, piece["rows"])]
        seconds += piece["seconds"]
    return trees, seconds


def chain(policy, tokenizer, problems, seed: int) -> dict:
    """One long chain per problem (temperature 1, ``CHAIN_TOKENS`` max): correct and generated tokens."""
    start = time.process_time()
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], 1, CHAIN_TOKENS, 1.0, seed=seed)
    correct = [verify(p, t) for p, t in zip(problems, rollouts.texts)]
    return dict(correct=correct, tokens=rollouts.lengths.tolist(), seconds=time.process_time() - start)


def search(trees, method: str, budget: int, seed: int, simulations: int, c_puct: float) -> dict:
    """One method at one budget (0: none) and seed on every tree: correct and tokens per problem."""
    fn, kwargs, _ = METHODS[method]
    if fn is mcts:
        kwargs = dict(kwargs, simulations=simulations, c_puct=c_puct, seed=seed)
    start = time.process_time()
    outcomes = [fn(t, max_tokens=budget or None, **kwargs) for t in trees]
    correct, tokens = [o.correct for o in outcomes], [o.tokens for o in outcomes]
    return dict(correct=correct, tokens=tokens, seconds=time.process_time() - start)


def summary(method: str, budget, seeds: list, pieces: list[dict]) -> dict:
    """A method's row of the result: per-seed, per-problem outcomes, means, CPU seconds; printed."""
    correct, tokens = [p["correct"] for p in pieces], [p["tokens"] for p in pieces]
    n = len(correct) * len(correct[0])
    row = dict(method=method, budget=budget, seeds=seeds, correct=correct, tokens=tokens)
    row.update(accuracy=sum(map(sum, correct)) / n, mean_tokens=sum(map(sum, tokens)) / n)
    row.update(seconds=sum(p["seconds"] for p in pieces), identical_across_seeds=all(c == correct[0] for c in correct))
    print(
        f"{method:32s} budget {budget!s:5s} accuracy {row['accuracy']:.3f} tokens {row['mean_tokens']:6.1f}", flush=True
    )
    return row


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("run",))
    parser.add_argument("--problems", type=int, default=512)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[128, 160, 192, 256, 384, 0], help="0: no budget")
    parser.add_argument("--simulations", type=int, default=256, help="MCTS simulations per problem at most")
    parser.add_argument("--c-puct", type=float, default=1.0)
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--save", action="store_true", help=f"write {RESULT.relative_to(RESULT.parents[2])}")
    args = parser.parse_args(argv)
    set_threads(1)
    problems = heldout_problems(args.problems, 0)
    cache = Path(args.cache) / sha256_of(LONG_DIR / "model.safetensors")[:12]  # a new policy, a new cache
    cache.mkdir(parents=True, exist_ok=True)
    trees, scoring_seconds = load_trees(problems, cache)
    n = f"n{args.problems}"
    chains = [
        cached(cache / f"chain-s{s}-{n}.json", lambda s=s: chain(*long_policy(), problems, s)) for s in args.seeds
    ]
    rows = [dict(summary("chain", CHAIN_TOKENS, args.seeds, chains), deterministic=False)]
    for method, (_, _, deterministic) in METHODS.items():
        seeds = args.seeds[:1] if deterministic else args.seeds
        for budget in args.budgets:
            pieces = [
                cached(
                    cache / f"{slug(method)}-b{budget}-s{s}-{n}-{args.simulations}sim-c{args.c_puct:g}.json",
                    lambda s=s, m=method, b=budget: search(trees, m, b, s, args.simulations, args.c_puct),
                )
                for s in seeds
            ]
            rows.append(dict(summary(method, budget or None, seeds, pieces), deterministic=deterministic))
    result = dict(
        **result_header("one process"),
        problems=args.problems,
        heldout_seed=HELDOUT_SEED,
        settings=dict(
            simulations=args.simulations,
            c_puct=args.c_puct,
            flat_prior_temperature=FLAT_PRIOR,
            chain_max_tokens=CHAIN_TOKENS,
            answer_tokens=ANSWER_TOKENS,
        ),
        scoring_seconds=scoring_seconds,
        notes=(
            "tokens: generated tokens per problem (every step text a search scored, once; one token per leaf "
            f"whose policy check it read; the answer line, {ANSWER_TOKENS} tokens; a chain's response with its end "
            "token). "
            "Best-first is deterministic: one row. MCTS's seed breaks exact ties only. Seconds are CPU seconds "
            "of one thread; the trees are scored once for all searches (scoring_seconds)."
        ),
        rows=rows,
    )
    if args.save:
        write_atomically(RESULT, lambda tmp: tmp.write_text(json.dumps(result, separators=(",", ":")) + "\n"))
    return result


if __name__ == "__main__":
    main()
