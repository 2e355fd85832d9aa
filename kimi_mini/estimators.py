"""Sample estimators of the KL divergence between two policies, after Schulman's note "Approximating KL
divergence" (2020).

Samples x come from q; ``log_ratio`` is log p(x) - log q(x) at those samples, and each estimator's mean
over x ~ q approximates KL(q || p):

- k1 = -log_ratio: unbiased, high variance, negative on some samples;
- k2 = log_ratio^2 / 2: biased (its mean agrees with KL to second order), low variance, never negative;
- k3 = (ratio - 1) - log_ratio: unbiased (E_q[ratio - 1] = 0), low variance, never negative (log r <= r - 1).

In RL the direction follows from who sampled: chapter 4 logs k3 on samples of pi_i with log_ratio = log
pi_{i+1} - log pi_i, which estimates KL(pi_i || pi_{i+1}); GRPO's KL term (DeepSeekMath) is k3 on samples of
pi_theta with log_ratio = log pi_ref - log pi_theta, which estimates KL(pi_theta || pi_ref).

Checked against the exact KL by enumeration and against the note's Gaussian table in tests/test_estimators.py.

Introduced in {ref}`pg-kl`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["KLEstimates", "kl_estimates"]


class KLEstimates(NamedTuple):
    """Per-sample estimates of KL(q || p), each the shape of ``log_ratio``."""

    k1: torch.Tensor
    k2: torch.Tensor
    k3: torch.Tensor


def kl_estimates(log_ratio: torch.Tensor) -> KLEstimates:
    """k1, k2, k3 of Schulman (2020) from ``log_ratio`` = log p(x) - log q(x) at samples x ~ q.

    Each has the shape of ``log_ratio`` (per token or per sequence); average over samples to estimate
    KL(q || p). k1 and k3 are unbiased, k2 is biased; k2 and k3 are never negative.
    """
    k1 = -log_ratio  # log q/p
    k2 = log_ratio**2 / 2  # (log p/q)^2 / 2
    k3 = torch.exp(log_ratio) - 1 - log_ratio  # (p/q - 1) - log p/q
    return KLEstimates(k1, k2, k3)
