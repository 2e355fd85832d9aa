"""Policy losses with one signature: the k1.5 mirror-descent loss and the peers it is compared with.

Every function takes ``logprobs`` (B, T): log pi_theta of each response token, with gradients;
``old_logprobs`` (B, T): the same under the policy that sampled them (pi_i, no gradients); ``mask``
(B, T): 1 on response tokens; ``rewards`` (B,); and ``group_size`` k, the k samples of a prompt being
contiguous rows. Each returns a scalar to minimise.

- :func:`omd_loss`: Kimi k1.5, section 2.3.2 (online policy mirror descent, the squared surrogate).
- :func:`reinforce_loss`: policy gradient with the group-mean baseline.
- :func:`grpo_loss`: GRPO (DeepSeekMath): group-normalised advantages and PPO's clipped ratio, per token.
- :func:`rest_loss`: ReST-style: fit only the correct samples (no negative gradient; report 3.5, Fig. 10).

Building blocks with their own signatures, derived in {ref}`pg-title`: :func:`leave_one_out_baseline`
(the RLOO baseline) and :func:`ppo_clip_loss` (PPO's clipped objective per token, which :func:`grpo_loss`
uses). DPO's loss lives with the long2short methods that use it (:func:`kimi_mini.long2short.dpo_loss`).

Checked against the report's Eq. 3 (tests/test_losses.py) and, for GRPO, TRL's GRPOTrainer loss with
``loss_type="grpo"`` and no KL term.

Introduced in {ref}`ch4-package`.
"""

from __future__ import annotations

import torch

from .groups import by_group

__all__ = [
    "sequence_log_ratio",
    "group_baseline",
    "leave_one_out_baseline",
    "ppo_clip_loss",
    "omd_loss",
    "omd_per_sequence",
    "reinforce_loss",
    "grpo_loss",
    "rest_loss",
]


def _check(logprobs, old_logprobs, mask, rewards, group_size) -> None:
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and mask {tuple(mask.shape)} must have the same (B, T) shape"
        )
    if rewards.shape != logprobs.shape[:1] or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} must be (B,) with B = {logprobs.shape[0]} a multiple of group_size = {group_size}"
        )


def sequence_log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """rho_j = log pi_theta(y_j|x) - log pi_i(y_j|x), summed over response tokens: (B,)."""
    return ((logprobs - old_logprobs) * mask).sum(dim=-1)


def group_baseline(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """r_bar: the mean reward of each sample's group, repeated for every sample of the group: (B,)."""
    return by_group(rewards, group_size).mean(dim=-1).repeat_interleave(group_size)


def leave_one_out_baseline(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """The mean reward of the *other* k - 1 samples of each sample's group: (B,).

    Independent of the sample it serves, so ``r_j - b_j`` keeps the policy gradient unbiased (RLOO);
    ``r_j - group_baseline`` equals ``(k - 1) / k * (r_j - b_j)``, the same direction scaled by 1 - 1/k.
    Introduced in {ref}`pg-baselines`.
    """
    if group_size < 2:
        raise ValueError(f"group_size = {group_size} is invalid: a leave-one-out baseline needs >= 2 samples")
    grouped = by_group(rewards, group_size)  # (N, k)
    return ((grouped.sum(-1, keepdim=True) - grouped) / (group_size - 1)).view(-1)  # (B,)


def ppo_clip_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantage: torch.Tensor, clip_eps: float = 0.2
) -> torch.Tensor:
    """PPO's clipped surrogate per token, negated to minimise: -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A).

    ratio = exp(logprobs - old_logprobs); ``advantage`` broadcasts against them ((B, 1) per sequence or (B, T)).
    Past 1 + eps with A > 0, or below 1 - eps with A < 0, the gradient is exactly zero (Schulman et al.
    2017, Eq. 7). Returns the (B, T) per-token loss; the caller masks and averages. Introduced in {ref}`pg-ppo`.
    """
    if clip_eps <= 0:
        raise ValueError(f"clip_eps = {clip_eps} is invalid: it must be > 0")
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T): pi_theta / pi_old per token
    pg_loss1 = -advantage * ratio  # (B, T): unclipped
    pg_loss2 = -advantage * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)  # (B, T): clipped
    return torch.max(pg_loss1, pg_loss2)  # (B, T): the pessimistic of the two


def omd_loss(logprobs, old_logprobs, mask, rewards, group_size: int, tau: float) -> torch.Tensor:
    """Kimi k1.5's surrogate (2.3.2): mean over samples of (r_j - r_bar - tau * rho_j)^2 / (2 tau).

    Its gradient is -(1/B) sum_j [ (r_j - r_bar) grad log pi_theta(y_j|x) - (tau / 2) grad rho_j^2 ], the
    report's Eq. 3 averaged over prompts: a policy gradient with the group-mean baseline plus a pull of
    log pi_theta back towards log pi_i (the KL ball of mirror descent). r_bar stands in for tau log Z.
    """
    _check(logprobs, old_logprobs, mask, rewards, group_size)
    if tau <= 0:
        raise ValueError(f"tau = {tau} is invalid: it must be > 0")
    advantage = rewards - group_baseline(rewards, group_size)  # (B,): r_j - r_bar
    rho = sequence_log_ratio(logprobs, old_logprobs, mask)  # (B,): sequence-level log-ratio
    return omd_per_sequence(rho, advantage, tau).mean()


def omd_per_sequence(rho: torch.Tensor, advantage: torch.Tensor, tau: float) -> torch.Tensor:
    """(B,) k1.5's surrogate per sequence (report 2.3.2): (r_j - r_bar - tau * rho_j)^2 / (2 tau), with
    ``advantage`` = r_j - r_bar and ``rho`` = log pi_theta(y_j|x) - log pi_i(y_j|x). :func:`omd_loss` is its
    mean; :class:`kimi_mini.trl.OMDTrainer` weighs it per sequence first (vLLM's importance ratio)."""
    return (advantage - tau * rho) ** 2 / (2 * tau)


def reinforce_loss(logprobs, old_logprobs, mask, rewards, group_size: int) -> torch.Tensor:
    """-(1/B) sum_j (r_j - r_bar) log pi_theta(y_j|x): REINFORCE with the group-mean baseline.

    ``old_logprobs`` is unused (the same signature as the others); on-policy by construction.
    """
    _check(logprobs, old_logprobs, mask, rewards, group_size)
    advantage = rewards - group_baseline(rewards, group_size)  # (B,)
    return -(advantage * (logprobs * mask).sum(dim=-1)).mean()


def grpo_loss(
    logprobs, old_logprobs, mask, rewards, group_size: int, clip_eps: float = 0.2, eps: float = 1e-4
) -> torch.Tensor:
    """GRPO: A_j = (r_j - mean) / (std + eps) per group; per token -min(ratio A, clip(ratio) A); mean per
    sequence, then over sequences (DeepSeekMath's 1/|o_i| normalisation; no KL term here)."""
    _check(logprobs, old_logprobs, mask, rewards, group_size)
    grouped = by_group(rewards, group_size)  # (N, k)
    advantage = ((grouped - grouped.mean(-1, keepdim=True)) / (grouped.std(-1, keepdim=True) + eps)).view(
        -1, 1
    )  # (B, 1)
    per_token = ppo_clip_loss(logprobs, old_logprobs, advantage, clip_eps) * mask  # (B, T)
    return (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def rest_loss(logprobs, old_logprobs, mask, rewards, group_size: int) -> torch.Tensor:
    """ReST-style: the negative log-likelihood per token of the correct samples only (r_j > 0); 0 if none."""
    _check(logprobs, old_logprobs, mask, rewards, group_size)
    keep = (rewards > 0).float().unsqueeze(-1) * mask  # (B, T)
    return -(logprobs * keep).sum() / keep.sum().clamp(min=1)
