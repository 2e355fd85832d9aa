"""Search inside the context against search outside it, at equal token budgets (chapter 8).

    python benchmarks/search.py [--problems 512] [--save]

On the same held-out problems, with the shipped long-CoT policy: one long chain of thought (at several
response budgets, and best-of-N over whole chains), against direct answers (the policy forced to answer
without reasoning) picked by vote, by log-prob or by the verifier among N, and beam search over the answer
guided by the policy's log-probs. Tokens are generated tokens per problem. ``--save`` writes
``kimi_mini/results/search-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kimi_mini.device import set_threads, versions  # noqa: E402
from kimi_mini.long2short import load_long_policy  # noqa: E402
from kimi_mini.rollout import sample  # noqa: E402
from kimi_mini.search import beam_answers, best_of_n, direct_answers  # noqa: E402
from kimi_mini.tasks import HELDOUT_SEED, heldout_problems, prompt_text, verify  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "search-cpu.json"


def _subset(values: list, per: int, n: int) -> list:
    """The first ``n`` of every block of ``per`` values."""
    return [v for g in range(len(values) // per) for v in values[g * per : g * per + n]]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=512)
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 64, 128, 256, 480])
    parser.add_argument("--chains", type=int, default=4, help="best-of-N over whole chains of thought, N up to this")
    parser.add_argument("--answers", type=int, default=64, help="direct answers per problem, N up to this")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    set_threads(1)
    policy, tokenizer = load_long_policy()
    problems = heldout_problems(args.problems)  # the held-out problems of RLConfig(seed=0)
    prompts = [prompt_text(p) for p in problems]
    points, start = [], time.perf_counter()

    def add(kind, label, correct, tokens, **extra):
        acc, mean_tokens = sum(correct) / len(problems), sum(tokens) / len(problems)
        points.append(dict(kind=kind, label=label, accuracy=acc, tokens=mean_tokens, **extra))
        print(f"{kind:22s} {label:12s} accuracy {acc:.3f} tokens {mean_tokens:7.1f}")

    for budget in args.budgets:  # in context: one chain of thought, cut at the budget
        chains = sample(policy, tokenizer, prompts, 1, budget, 1.0, seed=0)
        add(
            "chain of thought",
            f"{budget} max",
            [verify(p, t) for p, t in zip(problems, chains.texts)],
            chains.lengths.tolist(),
            budget=budget,
        )
    chains = sample(policy, tokenizer, prompts, args.chains, 480, 1.0, seed=1)
    for n in [2**i for i in range(args.chains.bit_length()) if 2**i <= args.chains]:
        texts, lengths = _subset(chains.texts, args.chains, n), _subset(chains.lengths.tolist(), args.chains, n)
        logprobs = _subset(chains.logprobs.sum(dim=1).tolist(), args.chains, n)
        for rule in ("vote", "verifier"):
            add(f"chains, {rule}", f"N = {n}", best_of_n(problems, texts, logprobs, n, rule), lengths, n=n)
    texts, lengths, logprobs = direct_answers(policy, tokenizer, problems, args.answers, seed=2)
    for n in [2**i for i in range(args.answers.bit_length()) if 2**i <= args.answers]:
        sub = [_subset(v, args.answers, n) for v in (texts, lengths, logprobs)]
        for rule in ("vote", "logprob", "verifier"):
            add(f"direct, {rule}", f"N = {n}", best_of_n(problems, sub[0], sub[2], n, rule), sub[1], n=n)
    for width in args.widths:
        beam_texts, beam_tokens = beam_answers(policy, tokenizer, problems, width)
        add(
            "direct, beam search",
            f"W = {width}",
            [verify(p, t) for p, t in zip(problems, beam_texts)],
            beam_tokens,
            width=width,
        )
    result = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{platform.machine()}, 1 thread",
        versions=versions(),
        problems=args.problems,
        heldout_seed=HELDOUT_SEED,
        seconds=time.perf_counter() - start,
        points=points,
    )
    if args.save:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
