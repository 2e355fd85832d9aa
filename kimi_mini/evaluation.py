"""Sampling responses and scoring them with the verifier.

A thin, batched wrapper around ``model.generate``: the plain way, used in chapter 1. Chapter 2 builds
the package's own sampler (:mod:`kimi_mini.rollout`), 31x faster on the warm-up policy, which also
returns the per-token log-probs RL needs.

Introduced in {ref}`ch1-eval`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import SampleConfig
from .tasks import Problem, policy_prompts, verify

__all__ = ["generate_responses", "evaluate_policy", "summarize", "summarize_by_difficulty"]


@torch.no_grad()
def generate_responses(
    model, tokenizer, prompts: list[str], cfg: SampleConfig = SampleConfig(), seed: int = 0, progress: bool = False
) -> list[dict]:
    """Sample one response per prompt; return dicts with ``text``, ``tokens`` (length) and ``finished``.

    ``temperature == 0`` decodes greedily. ``finished`` is False when the response hit
    ``max_new_tokens`` without an end-of-sequence token (a truncated response). ``progress`` shows a bar
    that advances by one batch of prompts at a time.
    """
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    out = []
    bar = tqdm(total=len(prompts), desc="sampling", unit="problem", disable=not progress)
    for start in range(0, len(prompts), cfg.batch_size):
        enc = tokenizer(prompts[start : start + cfg.batch_size], return_tensors="pt", padding=True).to(device)
        sampling = (
            dict(do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0)
            if cfg.temperature > 0
            else dict(do_sample=False)
        )
        generated = model.generate(
            **enc,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        response_ids = generated[:, enc["input_ids"].shape[1] :]  # (B, T_new)
        for row in response_ids.tolist():
            finished = tokenizer.eos_token_id in row
            row = row[: row.index(tokenizer.eos_token_id)] if finished else row
            out.append(
                dict(
                    text=tokenizer.decode(row, skip_special_tokens=True), tokens=len(row) + finished, finished=finished
                )
            )
        bar.update(len(response_ids))
    bar.close()
    return out


def evaluate_policy(
    model,
    tokenizer,
    problems: list[Problem],
    cfg: SampleConfig = SampleConfig(),
    seed: int = 0,
    prompt_style: str = "trace",
    progress: bool = False,
) -> list[dict]:
    """One sampled response per problem, scored: adds ``difficulty``, ``correct`` and ``searched``.

    ``searched`` is True when the response tried at least one expression (a ``vs`` comparison) rather
    than guessing straight away. ``prompt_style="chat"`` asks a pretrained chat model (chapter 9).
    ``progress=True`` shows a progress bar (about 100 s for 256 problems on one CPU thread).
    """
    prompts = policy_prompts(problems, tokenizer, prompt_style)
    responses = generate_responses(model, tokenizer, prompts, cfg, seed, progress)
    for problem, response in zip(problems, responses):
        response.update(
            difficulty=problem.difficulty,
            correct=verify(problem, response["text"]),
            searched=" vs " in response["text"],
        )
    return responses


def summarize(records: list[dict]) -> dict:
    """Accuracy, mean and p95 length (tokens), share finished and share searching, over ``records``."""
    lengths = np.array([r["tokens"] for r in records])
    return dict(
        n=len(records),
        accuracy=float(np.mean([r["correct"] for r in records])),
        mean_tokens=float(lengths.mean()),
        p95_tokens=float(np.percentile(lengths, 95)),
        finished=float(np.mean([r["finished"] for r in records])),
        searched=float(np.mean([r["searched"] for r in records])),
    )


def summarize_by_difficulty(records: list[dict]) -> dict[str, dict]:
    """:func:`summarize` per difficulty level, plus ``"all"``."""
    groups = defaultdict(list)
    for r in records:
        groups[r["difficulty"]].append(r)
    table = {d: summarize(groups[d]) for d in ("easy", "mid", "hard") if groups[d]}
    table["all"] = summarize(records)
    return table
