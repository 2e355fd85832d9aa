"""Search outside the context, to compare with the search a long chain of thought does inside it.

k1.5 reaches its results without Monte Carlo tree search or a process reward model: one long response
plans, tries, checks and backtracks on its own. The alternative spends the same tokens *outside* the
context, on many short responses and a rule that picks one. For Countdown-mini a short response is a
direct answer, the policy forced to start with ``answer`` (no reasoning), and the rules are:

- best-of-N by **vote** (the most frequent answer, ties to the first) or by **log-prob** (the answer the
  policy finds most likely), which need nothing but the policy;
- best-of-N with the **verifier** (correct if any of the N is correct): pass@N, an upper bound that needs
  the checker at test time, which a math or code problem in the wild does not have;
- **beam search** over the answer's tokens guided by the policy's log-probs (``model.generate`` with
  ``num_beams``), which returns the most likely answer it finds.

Tokens are counted as generated tokens: N answers cost N times an answer's length, a beam of width W costs
W times the length of the answer it returns. Introduced in {ref}`ch8-search`.
"""

from __future__ import annotations

from collections import Counter

import torch

from .groups import group_chunks
from .rollout import sample
from .tasks import ANSWER_PREFIX, Problem, extract_answer, prompt_text, verify

__all__ = ["direct_answers", "best_of_n", "beam_answers"]


def _answer_prompts(problems: list[Problem]) -> list[str]:
    """Each problem's prompt followed by ``answer ``: the policy can only name an expression."""
    return [prompt_text(p) + ANSWER_PREFIX for p in problems]


def direct_answers(policy, tokenizer, problems: list[Problem], n: int, seed: int = 0, temperature: float = 1.0):
    """``n`` answers per problem with no reasoning: each response is forced to start with ``answer``.

    Returns ``(texts, tokens, logprobs)``: ``answer ...`` texts (n per problem, problem-major), the tokens
    each cost (the forced prefix not counted, the end-of-sequence token counted) and each answer's
    log-probability under the policy."""
    prompts = _answer_prompts(problems)
    rollouts = sample(policy, tokenizer, prompts, n, max_new_tokens=16, temperature=temperature, seed=seed)
    texts = [ANSWER_PREFIX + text for text in rollouts.texts]
    return texts, rollouts.lengths.tolist(), rollouts.logprobs.sum(dim=1).tolist()


def best_of_n(problems: list[Problem], texts: list[str], logprobs: list[float], n: int, rule: str) -> list[int]:
    """0/1 per problem: the answer ``rule`` picks among its ``n`` (problem-major) answers is correct.

    ``rule`` is ``vote``, ``logprob`` or ``verifier`` (any of the n is correct: pass@n)."""
    if rule not in ("vote", "logprob", "verifier"):
        raise ValueError(f"rule = {rule!r} is invalid: it must be 'vote', 'logprob' or 'verifier'.")
    out = []
    for problem, group, scores in zip(problems, group_chunks(texts, n), group_chunks(logprobs, n)):
        if rule == "verifier":
            out.append(int(any(verify(problem, t) for t in group)))
            continue
        if rule == "vote":
            answers = [extract_answer(t) for t in group]
            counts = Counter(a for a in answers if a is not None)
            pick = group[answers.index(counts.most_common(1)[0][0])] if counts else group[0]
        else:
            pick = group[max(range(n), key=scores.__getitem__)]
        out.append(verify(problem, pick))
    return out


def beam_answers(policy, tokenizer, problems: list[Problem], width: int, batch_size: int = 128):
    """The most likely direct answer beam search of ``width`` finds for each problem (``model.generate``
    with ``num_beams``). Returns ``(texts, tokens)``: ``tokens`` = width x the returned answer's length."""
    device = next(policy.parameters()).device
    texts, tokens = [], []
    prompts = _answer_prompts(problems)
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            out = policy.generate(
                **enc,
                num_beams=width,
                do_sample=False,
                max_new_tokens=16,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            ended = tokenizer.eos_token_id in row
            row = row[: row.index(tokenizer.eos_token_id)] if ended else row
            row = [t for t in row if t != tokenizer.pad_token_id]
            texts.append(ANSWER_PREFIX + tokenizer.decode(row, skip_special_tokens=True))
            tokens.append(width * (len(row) + ended))
    return texts, tokens
