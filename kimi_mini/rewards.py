"""Length rewards: the k1.5 length penalty (2.3.3) and, for comparison, DAPO's soft overlong punishment.

RL for long chains of thought makes responses longer (chapter 5); past some point the extra tokens buy
little. k1.5 adds a length reward to the verifier's reward. Within the group of k responses to one prompt,
with ``min_len`` and ``max_len`` the shortest and longest (in tokens):

    lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)
    length reward = lambda_i            if response i is correct
                    min(0, lambda_i)    if it is wrong

so among correct answers the shortest gains 0.5 and the longest loses 0.5, and a wrong answer is never
rewarded for being short, only penalised for being long. If every response has the same length the length
reward is 0. It starts after a warm-up of plain RL (:class:`kimi_mini.config.RLConfig` ``length_penalty``,
``length_penalty_warmup``): started on a weak policy it slows training down (the report) or, here, drives
it to short guesses (chapter 7).

Peers differ. open-r1's ``len_reward`` and the TRL example built on it implement the same formula, but
as a reward function called on a whole batch (all prompts together) and measuring characters:
:func:`batch_length_penalty` is that variant, for the comparison in chapter 7. DAPO (Yu et al. 2025)
instead punishes only responses near the length limit (:func:`overlong_punishment`; TRL's
``get_soft_overlong_punishment``, verl's ``overlong_buffer``).

Introduced in {ref}`ch7-penalty`.
"""

from __future__ import annotations

import torch

from .groups import by_group

__all__ = ["length_penalty", "batch_length_penalty", "overlong_punishment", "penalty_weight"]


def length_penalty(lengths: torch.Tensor, correct: torch.Tensor, group_size: int) -> torch.Tensor:
    """k1.5's length reward (report 2.3.3), per prompt group.

    ``lengths`` (B,) response lengths in tokens, ``correct`` (B,) bool or 0/1, rows in contiguous groups of
    ``group_size`` responses to the same prompt. Returns (B,) floats in [-0.5, 0.5]: lambda_i for a correct
    response, min(0, lambda_i) for a wrong one, with lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)
    and min_len, max_len taken over the response's own group; 0 for a group whose responses all have the
    same length.
    """
    if lengths.shape != correct.shape or lengths.dim() != 1:
        raise ValueError(f"lengths and correct must be 1-D of the same shape, got {lengths.shape} and {correct.shape}")
    if group_size < 1 or len(lengths) % group_size:
        raise ValueError(f"group_size = {group_size} is invalid: it must divide the batch of {len(lengths)} rows.")
    lengths = by_group(lengths.float(), group_size)  # (G, k)
    correct = by_group(correct.bool(), group_size)  # (G, k)
    min_len = lengths.min(dim=1, keepdim=True).values  # (G, 1)
    max_len = lengths.max(dim=1, keepdim=True).values  # (G, 1)
    lam = 0.5 - (lengths - min_len) / (max_len - min_len).clamp(min=1e-12)  # (G, k): lambda_i
    len_reward = torch.where(correct, lam, lam.clamp(max=0.0))  # lambda_i if correct, min(0, lambda_i) if wrong
    len_reward = torch.where(max_len > min_len, len_reward, torch.zeros_like(len_reward))  # equal lengths: 0
    return len_reward.flatten()  # (B,)


def batch_length_penalty(lengths: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """The same formula with min_len and max_len over the whole batch (open-r1's ``len_reward``, TRL's
    example): :func:`length_penalty` with one group of all B responses.

    Pass character counts to reproduce them exactly; a batch mixes prompts, so a response's reward depends
    on how long the answers to *other* problems are.
    """
    return length_penalty(lengths, correct, group_size=len(lengths))


def overlong_punishment(lengths: torch.Tensor, max_len: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to ``max_len - buffer`` tokens, then falling linearly to -1 at
    ``max_len`` (and -1 beyond). Returns (B,) floats in [-1, 0]."""
    if not 0 < buffer <= max_len:
        raise ValueError(f"buffer = {buffer} is invalid: it must be in [1, max_len = {max_len}].")
    start = max_len - buffer
    return ((start - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)


def penalty_weight(weight: float, warmup: int, iteration: int) -> float:
    """The length reward's weight at ``iteration``: 0 for the first ``warmup`` iterations, then ``weight``."""
    return weight if iteration >= warmup else 0.0
