"""Per-step credit from a value function against the outcome reward, on the warm-up policy's own traces.

    python benchmarks/value_credit.py [--traces 32] [--continuations 16] [--save]

Report 2.3.2 argues against a value model: it would give an exploratory wrong step a low value even when
the chain recovers from it, while the outcome reward credits the whole chain. This measures that argument
on the book's task with the best critic there is, the *exact* value of the warm-up policy: for correct
responses that tried a wrong pair first (a search line ending in ``.``), V(prefix) = the share of
``--continuations`` samples from the prefix that end correct, at every line boundary. A line's per-step
advantage is V(after) - V(before). ``--save`` writes ``kimi_mini/results/value-credit-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kimi_mini.device import set_threads, versions  # noqa: E402
from kimi_mini.groups import by_group, per_row  # noqa: E402
from kimi_mini.rollout import rollout_rewards, sample  # noqa: E402
from kimi_mini.tasks import Problem, heldout_problems, prompt_text, verify  # noqa: E402
from kimi_mini.warmup import load_warmup_policy  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "value-credit-cpu.json"


def recovered_traces(policy, tokenizer, problems: list[Problem], n: int, seed: int) -> list[tuple[Problem, str]]:
    """The first ``n`` correct responses that searched and missed at least once before the hit."""
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], 1, 480, 1.0, seed=seed)
    correct = rollout_rewards(problems, rollouts).tolist()
    found = [(p, t) for p, t, c in zip(problems, rollouts.texts, correct) if c and ".\n" in t]
    return found[:n]


def line_prefixes(response: str) -> tuple[list[str], list[str]]:
    """The response's search lines (the answer line left out) and the prefixes at each line boundary."""
    lines = response.split("\n")[:-1]
    return lines, ["".join(line + "\n" for line in lines[:cut]) for cut in range(len(lines) + 1)]


def prefix_values(policy, tokenizer, rows: list[tuple[Problem, str]], k: int, seed: int) -> tuple[np.ndarray, int]:
    """(N,) V(prefix), the share of ``k`` continuations of each (problem, prefix) that end correct, and the
    tokens sampled."""
    prompts = [prompt_text(p) + prefix for p, prefix in rows]
    rollouts = sample(policy, tokenizer, prompts, k, 480, 1.0, seed=seed)
    texts = [prefix + text for (_, prefix), text in zip(per_row(rows, k), rollouts.texts)]
    hits = np.array([verify(p, text) for (p, _), text in zip(per_row(rows, k), texts)], dtype=float)
    return by_group(hits, k).mean(axis=1), int(rollouts.lengths.sum())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=32)
    parser.add_argument("--continuations", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    start = time.perf_counter()
    policy, tokenizer = load_warmup_policy()
    traces = recovered_traces(policy, tokenizer, heldout_problems(512), args.traces, seed=0)
    rows, spans = [], []
    for problem, response in traces:
        lines, prefixes = line_prefixes(response)
        spans.append((len(rows), lines))
        rows += [(problem, prefix) for prefix in prefixes]
    values, tokens = prefix_values(policy, tokenizer, rows, args.continuations, seed=1)
    out = []
    for (first, lines), (problem, response) in zip(spans, traces):
        v = values[first : first + len(lines) + 1]
        out.append(
            dict(
                prompt=prompt_text(problem),
                response=response,
                values=v.tolist(),
                missed=[line.endswith(".") for line in lines],
            )
        )
    result = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{platform.machine()}, {args.threads} thread(s)",
        versions=versions(),
        policy="warmup-cpu-tiny",
        continuations=args.continuations,
        continuation_tokens=tokens,
        seconds=time.perf_counter() - start,
        traces=out,
    )
    if args.save:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
