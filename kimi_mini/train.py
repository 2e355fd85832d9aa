"""The RL loop of Kimi k1.5 (2.3): sample, score, fit the mirror-descent loss, repeat.

Each iteration i: draw ``prompts_per_iteration`` problems, sample ``group_size`` responses each from the
current policy pi_i (:func:`kimi_mini.rollout.sample`), score them with the verifier, freeze their log-probs
as pi_i, then take ``grad_steps`` optimizer steps of the chosen loss (:mod:`kimi_mini.losses`) on those same
samples, with a *fresh* optimizer (the report resets the optimizer state every iteration).

Resume is exact by construction: the problems and the sampling noise of iteration i come from
``(seed, i)``, and the optimizer is new every iteration, so the only state is the policy's weights, the
iteration and the metrics so far. A checkpoint holds exactly those (safetensors for the weights, JSON for
the rest with the weights' SHA-256, each written to a temporary file and renamed), so a run killed at any
moment resumes from its last checkpoint and ends with the metrics of an uninterrupted run. One process
writes a run directory at a time (:func:`kimi_mini.rundir.run_lock`); a damaged checkpoint is a clear
error naming the file, never a silent restart.

Two guards stop runs that cannot end well: settings whose sampling alone exceeds the device's free memory
are refused before the first iteration (:func:`memory_estimate`), and a run whose held-out accuracy
collapses to 0 stops with its checkpoint kept (``RLConfig.collapse_accuracy``, :func:`collapse_reason`).

Metrics (one JSON line per iteration in ``metrics.jsonl``): ``reward`` (mean training reward: what the
loss saw), ``accuracy`` (the verifier's mean, whatever scored the responses), ``response_tokens`` (mean
length), ``truncated`` (share cut at max_new_tokens), ``kl_prev`` (KL(pi_i || pi_{i+1}) per response,
estimated on the samples with the non-negative k3 estimator), ``entropy`` (mean -log pi_i per response
token, an entropy estimate), ``loss``, ``rollout_seconds``, ``train_seconds``, ``tokens_per_second``, with a
length reward ``length_reward`` (the mean added for length) and, every ``eval_every`` iterations,
``eval_accuracy`` on held-out problems, with length, answer-token share and both per difficulty
(:func:`heldout_metrics`).

One process, one device: this loop does not use torch.distributed or accelerate. To train on many
processes or GPUs, run the same recipe on Hugging Face TRL (:mod:`kimi_mini.trl`), launched with
accelerate by :mod:`kimi_mini.scaleout` (chapter 9).

Introduced in {ref}`ch4-loop`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from . import losses
from .config import LOSSES, RLConfig, TaskConfig
from .device import available_memory
from .estimators import kl_estimates
from .groups import per_row
from .partial import Group, ReplayBuffer, assemble, partial_rollout_step
from .policy import check_finite
from .rewards import length_penalty, overlong_punishment, penalty_weight
from .rollout import Rollouts, response_text, rollout_rewards, sample, token_logprobs
from .rundir import check_file, read_json, remove_leftovers, run_lock, sha256_of, write_atomically
from .sampling import ProblemPool, guessable, iteration_problems
from .tasks import (
    DIFFICULTIES,
    SEED_STRIDE,
    Problem,
    heldout_problems,
    make_problems,
    policy_prompts,
    trace_counts,
)
from .vision import error_kind, is_vision_policy, policy_inputs

__all__ = [
    "RLConfig",
    "train_rl",
    "rl_iteration",
    "collect_rollouts",
    "score_rollouts",
    "update_policy",
    "policy_loss",
    "backward_loss",
    "backward_in_micro_batches",
    "IterationSamples",
    "Scores",
    "evaluate_heldout",
    "judged_rewards",
    "heldout_metrics",
    "heldout_outcomes",
    "cut_responses",
    "baseline_rows",
    "kl_k3",
    "length_rewards",
    "load_checkpoint",
    "load_weights",
    "memory_estimate",
    "collapse_reason",
    "TrainingCollapsed",
    "LOSSES",
]


def policy_loss(cfg: RLConfig, group_size: int | None = None) -> Callable[..., torch.Tensor]:
    """The loss ``cfg.loss`` names, its settings bound, chosen once per update:
    ``loss(logprobs, old_logprobs, mask, rewards)`` -> scalar (:mod:`kimi_mini.losses`; k1.5's is ``omd``,
    report 2.3.2). Rows share a baseline in blocks of ``group_size`` (default ``cfg.group_size``)."""
    k = group_size or cfg.group_size
    if cfg.loss == "omd":
        return functools.partial(losses.omd_loss, group_size=k, tau=cfg.tau)
    if cfg.loss == "grpo":
        return functools.partial(losses.grpo_loss, group_size=k, clip_eps=cfg.clip_eps)
    return functools.partial({"reinforce": losses.reinforce_loss, "rest": losses.rest_loss}[cfg.loss], group_size=k)


def baseline_rows(cfg: RLConfig, rollouts: Rollouts) -> int:
    """How many rows share one baseline: a prompt's k responses; with partial rollouts that do not wait for
    their group (chapter 6), every trajectory that ended this iteration (a batch-mean baseline)."""
    return len(rollouts) if cfg.partial_rollouts and not cfg.wait_for_group else cfg.group_size


def kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi_old || pi_new) from samples of pi_old: ratio - 1 - log ratio (>= 0),
    with log_ratio = log pi_new - log pi_old (Schulman's "k3", :func:`kimi_mini.estimators.kl_estimates`;
    TRL and verl log the same)."""
    return kl_estimates(log_ratio).k3


def update_policy(policy, rollouts, rewards, cfg: RLConfig, iteration: int = 0, after_step=None) -> torch.Tensor:
    """``cfg.grad_steps`` AdamW steps of ``cfg.loss`` on one iteration's samples, from a fresh optimizer
    (report 2.3.2: the optimizer state is reset every iteration).

    ``rollouts.logprobs`` are pi_i's log-probs, frozen; ``rollouts.loss_mask`` marks the tokens the loss
    counts. ``after_step(step, logprobs)``, if given, sees the (B, T) log-probs each step used (before its
    update). With ``cfg.micro_batch_groups`` each step sums the gradients of chunks of that many groups
    (:func:`backward_in_micro_batches`: less memory, the same step). Returns the last loss; raises
    FloatingPointError if a loss is not finite.
    """
    loss_fn = policy_loss(cfg, baseline_rows(cfg, rollouts))
    backward = backward_loss
    if cfg.micro_batch_groups:
        backward = functools.partial(backward_in_micro_batches, groups=cfg.micro_batch_groups)
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)  # reset every iteration
    for step in range(cfg.grad_steps):
        optimizer.zero_grad(set_to_none=True)
        logprobs, loss = backward(policy, rollouts, rewards, loss_fn, cfg.length_buckets)  # (B, T), scalar
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"iteration {iteration}, gradient step {step}: the {cfg.loss} loss is {loss.item()}"
            )
        if after_step is not None:
            after_step(step, logprobs)
        optimizer.step()
    policy.eval()
    return loss


def backward_loss(policy, rollouts, rewards, loss_fn, length_buckets: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Backpropagate ``loss_fn`` on the whole batch: log pi_theta of every response token in one pass
    (:func:`kimi_mini.rollout.token_logprobs`), against pi_i's frozen log-probs. Returns the (B, T)
    log-probs and the loss, detached; a loss that is not finite is returned without a backward pass."""
    logprobs = token_logprobs(policy, rollouts, length_buckets=length_buckets)  # (B, T): log pi_theta
    loss = loss_fn(logprobs, rollouts.logprobs, rollouts.loss_mask.float(), rewards)
    if torch.isfinite(loss):
        loss.backward()
    return logprobs.detach(), loss.detach()


def backward_in_micro_batches(
    policy, rollouts, rewards, loss_fn, length_buckets: int = 1, groups: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`backward_loss` on ``groups`` prompt groups at a time, gradients summed (less memory).

    Each chunk's loss is weighted by its share of the rows, so for losses that average over sequences
    (omd, reinforce, grpo) the summed gradient is the whole batch's. Same returns as :func:`backward_loss`."""
    B = len(rollouts)
    size = min(B, groups * rollouts.group_size)
    if size == B:
        return backward_loss(policy, rollouts, rewards, loss_fn, length_buckets)
    logprobs_all, total = torch.zeros_like(rollouts.logprobs), torch.zeros((), device=rollouts.logprobs.device)
    for rows in torch.arange(B, device=rollouts.mask.device).split(size):
        weighted = _weighted(loss_fn, len(rows) / B)  # this chunk's share of the rows
        logprobs, loss = backward_loss(policy, rollouts.select(rows), rewards[rows], weighted, length_buckets)
        logprobs_all[rows] = logprobs  # (b, T) into (B, T)
        total = total + loss
    return logprobs_all, total


def _weighted(loss_fn, share: float):
    return lambda *args: loss_fn(*args) * share


def length_rewards(lengths: torch.Tensor, correct: torch.Tensor, cfg: RLConfig, iteration: int) -> torch.Tensor:
    """(B,) what the config adds to the verifier's rewards for length at ``iteration``: k1.5's per-group
    length reward times its weight (0 during the warm-up, report 2.3.3), plus DAPO's soft overlong
    punishment if ``overlong_buffer`` is set. Rows are in contiguous groups of ``cfg.group_size``."""
    out = torch.zeros(len(lengths), device=lengths.device)
    weight = penalty_weight(cfg.length_penalty, cfg.length_penalty_warmup, iteration)
    if weight > 0:
        out = out + weight * length_penalty(lengths, correct, cfg.group_size)
    if cfg.overlong_buffer > 0:
        out = out + overlong_punishment(lengths, cfg.max_new_tokens, cfg.overlong_buffer)
    return out


def _iteration_seed(cfg: RLConfig, iteration: int) -> int:
    return cfg.seed * SEED_STRIDE + iteration


def save_checkpoint(
    run_dir: Path,
    policy,
    iteration: int,
    history: list[dict],
    cfg: RLConfig,
    buffer: ReplayBuffer | None = None,
    pool: ProblemPool | None = None,
) -> None:
    """Weights (safetensors) then state (JSON), each written atomically; the state names the weights, holds
    their SHA-256, the replay buffer of partial rollouts (unfinished trajectories are work too) and the
    problem pool's success counts (chapter 8)."""
    weights = run_dir / f"policy-{iteration:06d}.safetensors"
    write_atomically(weights, lambda p: save_model(policy, str(p)))  # handles the tied embeddings
    meta = dict(iteration=iteration, weights=weights.name, weights_sha256=sha256_of(weights), history=history)
    meta["config"] = asdict(cfg)
    meta["buffer"] = (buffer or ReplayBuffer()).state_dict()
    if pool is not None:
        meta["pool"] = pool.state_dict()
    write_atomically(run_dir / "checkpoint.json", lambda p: p.write_text(json.dumps(meta)))
    for old in run_dir.glob("policy-*.safetensors"):
        if old.name != weights.name:
            old.unlink()


def load_checkpoint(run_dir: str | Path, policy) -> dict | None:
    """Load the last checkpoint of ``run_dir`` into ``policy``; return its state, or None if there is none.

    Raises ValueError naming the file if ``checkpoint.json`` or the weights are damaged (not JSON, another
    SHA-256 than recorded, unreadable, not finite) or do not fit ``policy``."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "checkpoint.json"
    if not meta_path.exists():
        return None
    meta = read_json(meta_path)
    kinds = dict(iteration=int, weights=str, history=list, config=dict)
    missing = [key for key, kind in kinds.items() if not isinstance(meta.get(key), kind)]
    if "weights_sha256" in meta and not isinstance(meta["weights_sha256"], str):
        missing.append("weights_sha256")
    if missing:
        raise ValueError(f"{meta_path} is damaged: it has no valid {', '.join(missing)}")
    weights = run_dir / meta["weights"]
    if "weights_sha256" in meta:  # checkpoints written before checksums were recorded have none
        check_file(weights, meta["weights_sha256"], meta_path)
    load_weights(policy, weights)
    return meta


def load_weights(policy, path: str | Path) -> None:
    """Load a safetensors file into ``policy`` (no pickle); ValueError naming the file if it cannot be read,
    does not fit the policy or holds values that are not finite."""
    path = Path(path)
    device = next(policy.parameters()).device
    try:
        load_model(policy, str(path), strict=True, device=str(device))
    except RuntimeError as err:  # missing or unexpected tensors, other shapes
        raise ValueError(f"the checkpoint {path} does not fit this policy: {err}") from err
    except Exception as err:  # safetensors' SafetensorError, a missing file: damaged beyond reading
        raise ValueError(f"{path} cannot be read as safetensors weights ({type(err).__name__}: {err})") from err
    check_finite(policy, f"{path} is damaged")


def heldout_metrics(policy, tokenizer, cfg: RLConfig, task_cfg=None) -> dict:
    """One sample (at cfg.temperature, up to cfg.max_new_tokens) on each of cfg.eval_problems held-out
    problems, the same for every run with the same seed and never trained on. Returns ``eval_accuracy``,
    ``eval_tokens`` (mean response length), ``eval_answer_share`` (share of the tokens spent on the final
    ``answer`` line, the rest being reasoning) and both per difficulty (``eval_accuracy_hard``, ...)."""
    task_cfg = task_cfg or TaskConfig()
    problems = heldout_problems(cfg.eval_problems, cfg.seed, task_cfg)  # never trained on
    rollouts = _heldout_rollouts(policy, tokenizer, cfg, problems)
    correct = rollout_rewards(problems, rollouts)  # (N,)
    lengths = rollouts.lengths.float().cpu()  # (N,)
    answer = torch.tensor(
        [_answer_tokens(tokenizer, text, reason) for text, reason in zip(rollouts.texts, rollouts.finish_reason)]
    )
    out = dict(
        eval_accuracy=float(correct.mean()),
        eval_tokens=float(lengths.mean()),
        eval_answer_share=float(answer.sum() / lengths.sum().clamp(min=1)),
    )
    for level in ("easy", "mid", "hard"):
        rows = torch.tensor([p.difficulty == level for p in problems])
        if rows.any():
            out[f"eval_accuracy_{level}"] = float(correct[rows].mean())
            out[f"eval_tokens_{level}"] = float(lengths[rows].mean())
    return out


def _heldout_rollouts(policy, tokenizer, cfg: RLConfig, problems: list[Problem]) -> Rollouts:
    """One sample per problem at the run's temperature and token limit, noise seeded by ``cfg.seed``; problems
    come as ``cfg.modality`` says, held-out images always drawn with image seed 0."""
    prompts, images = policy_inputs(problems, tokenizer, cfg.prompt_style, cfg.modality, seed=0)
    return sample(policy, tokenizer, prompts, 1, cfg.max_new_tokens, cfg.temperature, seed=cfg.seed, images=images)


def heldout_outcomes(
    policy,
    tokenizer,
    cfg: RLConfig,
    n: int = 512,
    task_cfg=None,
    max_new_tokens: int | None = None,
    cut_at: tuple[int, ...] = (),
    modality: str | None = None,
) -> dict:
    """Per-problem results on the ``n`` shared held-out problems (``heldout_problems(n, 0)``, the same for
    every seed, so runs of different seeds and methods form (seeds, problems) arrays paired by problem for
    :mod:`kimi_mini.stats`). One sample each at the run's temperature and token limit (``max_new_tokens``
    overrides the limit), noise seeded by ``cfg.seed``. Returns lists: ``correct`` (0/1), ``tokens``
    (response length), ``truncated`` (0/1) and the response's :func:`~kimi_mini.tasks.trace_counts`
    (``candidates``, ``checks``, ``backtracks``).

    ``cut_at``: smaller limits B at which to score the same responses too, as ``correct_at[str(B)]``. The
    sampler draws every row's noise at every step, so the response limit B would give is this response
    cut at B tokens (:func:`cut_responses`): one long sample scores a policy at every smaller budget, with
    ``tokens`` ``min(tokens, B)`` and ``truncated`` wherever ``tokens > B``.

    ``modality`` (default ``cfg.modality``) sets what the problems come as; for any but ``text`` the result
    also holds each response's :func:`~kimi_mini.vision.error_kind` as ``errors`` (chapter 11).
    """
    problems = heldout_problems(n, 0, task_cfg or TaskConfig())
    if max_new_tokens is not None:
        cfg = replace(cfg, max_new_tokens=max_new_tokens)
    if modality is not None:
        cfg = replace(cfg, modality=modality)
    rollouts = _heldout_rollouts(policy, tokenizer, cfg, problems)
    counts = [trace_counts(text) for text in rollouts.texts]
    out = dict(
        correct=[int(v) for v in rollout_rewards(problems, rollouts).tolist()],
        tokens=[int(v) for v in rollouts.lengths.tolist()],
        truncated=[int(reason == "length") for reason in rollouts.finish_reason],
        candidates=[c.candidates for c in counts],
        checks=[c.checks for c in counts],
        backtracks=[c.backtracks for c in counts],
    )
    if cfg.modality != "text":
        out["errors"] = [error_kind(p, t, c) for p, t, c in zip(problems, rollouts.texts, out["correct"])]
    if cut_at:
        out["correct_at"] = {
            str(b): [int(v) for v in rollout_rewards(problems, cut_responses(rollouts, tokenizer, b)).tolist()]
            for b in cut_at
        }
    return out


def cut_responses(rollouts: Rollouts, tokenizer, budget: int) -> Rollouts:
    """The responses as a limit of ``budget`` tokens would have ended them: each cut after ``budget`` tokens
    (finish reason ``"length"``), texts decoded again. Only ``texts``, ``finish_reason`` and the masks change."""
    lengths = rollouts.lengths.clamp(max=budget)  # (B,)
    reasons = [r if n <= budget else "length" for r, n in zip(rollouts.finish_reason, rollouts.lengths.tolist())]
    ids = rollouts.response_ids.tolist()
    texts = [response_text(tokenizer, row[:n], r) for row, n, r in zip(ids, lengths.tolist(), reasons)]
    mask = torch.arange(rollouts.mask.shape[1], device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    return replace(rollouts, texts=texts, finish_reason=reasons, mask=mask, loss_mask=mask)


def _answer_tokens(tokenizer, text: str, finish_reason: str) -> int:
    """Tokens of the final ``answer ...`` line (and the end-of-sequence token); 0 if there is none."""
    lines = text.split("\n")
    if not lines[-1].startswith("answer"):
        return 0
    return len(tokenizer(lines[-1], add_special_tokens=False)["input_ids"]) + (finish_reason == "eos")


def evaluate_heldout(policy, tokenizer, cfg: RLConfig, task_cfg=None) -> float:
    """Held-out accuracy: ``heldout_metrics(...)["eval_accuracy"]``."""
    return heldout_metrics(policy, tokenizer, cfg, task_cfg)["eval_accuracy"]


def _sampled_counts(problems) -> dict:
    """How many problems of each difficulty an iteration started (logged with pool samplers)."""
    return {f"sampled_{level}": sum(p.difficulty == level for p in problems) for level in DIFFICULTIES}


@dataclass
class IterationSamples:
    """Step 1's output: the responses an iteration learns from, with their problems."""

    problems: list[Problem]  # the problem of each group
    rollouts: Rollouts | None  # None: partial rollouts finished no group this iteration
    log: dict = field(default_factory=dict)  # counts for the metrics row
    pool_indices: list[int] | None = None  # each group's problem in the pool (pool samplers)


def collect_rollouts(
    policy, tokenizer, cfg: RLConfig, iteration: int, task_cfg, buffer: ReplayBuffer, pool: ProblemPool | None
) -> IterationSamples:
    """Sample k responses to each of the iteration's problems from pi_i, log-probs kept (report 2.3.1); with
    ``cfg.partial_rollouts``, continue the buffer's trajectories within a token budget and return the
    groups that finished (2.6.2). Problems come fresh or from ``pool`` (2.3.4)."""
    seed = _iteration_seed(cfg, iteration)
    if not cfg.partial_rollouts:
        problems, indices = iteration_problems(cfg, iteration, seed, task_cfg, pool)
        prompts, images = policy_inputs(problems, tokenizer, cfg.prompt_style, cfg.modality, seed=seed)
        rollouts = sample(
            policy, tokenizer, prompts, cfg.group_size, cfg.max_new_tokens, cfg.temperature, seed=seed, images=images
        )
        log = {} if pool is None else _sampled_counts(problems)
        return IterationSamples(problems, rollouts, log, indices if pool is not None else None)
    step = partial_rollout_step(policy, tokenizer, buffer, cfg, iteration, seed, task_cfg, pool=pool)
    log = dict(
        finished_groups=len(step.finished),
        carried_rows=step.carried_rows,
        generated_tokens=step.generated_tokens,
        buffer_rows=len(buffer.unfinished()),
        ended_rows=len(step.ended),
    )
    if pool is not None:
        log.update(_sampled_counts(step.new_problems))
    # Whole groups, or (not waiting for the group) each trajectory alone, as a group of one.
    learn = step.finished if cfg.wait_for_group else [Group(g.problem, g.started, [t], g.index) for g, t in step.ended]
    if not learn:
        return IterationSamples([], None, log)
    rollouts = assemble(learn, tokenizer, iteration, cfg.temperature, cfg.mask_stale_segments, cfg.prompt_style)
    rollouts = rollouts.to(next(policy.parameters()).device)
    log["reused_share"] = float((rollouts.sampled_in[rollouts.mask] < iteration).float().mean())
    indices = [g.index for g in learn] if pool is not None else None  # whenever they started
    return IterationSamples([g.problem for g in learn], rollouts, log, indices)


def judged_rewards(reward_fn, problems, rollouts) -> torch.Tensor:
    """(B,) ``reward_fn``'s rewards, called as TRL calls a reward function: each row's prompt and response
    text, with the problem's ``numbers`` and ``target`` as columns (chapter 10's reward models)."""
    rows = per_row(problems, rollouts.group_size)  # (B,) the problem of each response
    values = reward_fn(
        prompts=per_row(rollouts.prompts, rollouts.group_size),
        completions=rollouts.texts,
        numbers=[list(p.numbers) for p in rows],
        target=[p.target for p in rows],
    )
    return torch.tensor(values, dtype=torch.float32)


@dataclass
class Scores:
    """Step 2's output."""

    correct: torch.Tensor  # (B,) the verifier's 0/1, or a reward model's score when one replaces it
    rewards: torch.Tensor  # (B,) what the loss sees: correct + length reward - repeat penalty
    accuracy: float  # the verifier's mean, whatever scored the responses
    length_reward: float | None = None  # the mean length reward, when one is configured


def score_rollouts(problems, rollouts: Rollouts, cfg: RLConfig, iteration: int, reward_fn=None) -> Scores:
    """The verifier's 0/1 (report 2.3.1; or ``reward_fn``'s scores, chapter 10), minus ``repeat_penalty`` for
    trajectories stopped for repeating (2.6.2), plus the length reward (2.3.3) when configured."""
    verified = rollout_rewards(problems, rollouts).to(rollouts.mask.device)  # (B,) the verifier's 0/1
    correct = verified
    if reward_fn is not None:  # a learned judge in place of the verifier; the verifier is only logged
        correct = judged_rewards(reward_fn, problems, rollouts).to(verified.device)  # (B,)
    repeated = torch.tensor([r == "repeat" for r in rollouts.finish_reason], device=correct.device)
    rewards = correct - cfg.repeat_penalty * repeated.float()  # (B,)
    if cfg.length_penalty == 0 and cfg.overlong_buffer == 0:
        return Scores(correct, rewards, float(verified.mean()))
    length_reward = length_rewards(rollouts.lengths.to(correct.device), correct, cfg, iteration)  # (B,)
    return Scores(correct, rewards + length_reward, float(verified.mean()), float(length_reward.mean()))


def rl_iteration(
    policy,
    tokenizer,
    cfg: RLConfig,
    iteration: int,
    task_cfg,
    buffer: ReplayBuffer,
    pool: ProblemPool | None,
    reward_fn=None,
) -> dict:
    """One iteration of Kimi k1.5's RL (report 2.3), top to bottom; returns its metrics row."""
    start = time.perf_counter()
    policy.eval()
    # 1. Sample: k responses to each problem from pi_i, their log-probs frozen as pi_i's (2.3.1); with
    #    partial rollouts, unfinished trajectories carry over and only finished groups go on (2.6.2).
    batch = collect_rollouts(policy, tokenizer, cfg, iteration, task_cfg, buffer, pool)
    rollout_seconds = time.perf_counter() - start
    if batch.rollouts is None:  # partial rollouts: no group finished this iteration, nothing to learn from
        return dict(iteration=iteration, rollout_seconds=rollout_seconds, train_seconds=0.0, **batch.log)
    rollouts = batch.rollouts
    # 2. Score: the verifier's 0/1 (2.3.1) plus the length reward (2.3.3); the pool counts successes (2.3.4).
    scores = score_rollouts(batch.problems, rollouts, cfg, iteration, reward_fn)
    if pool is not None:
        pool.record(batch.pool_indices, scores.correct.cpu(), cfg.group_size)
    # 3. Fit the mirror-descent loss (2.3.2): grad_steps steps on these samples from a fresh optimizer.
    start = time.perf_counter()
    loss = update_policy(policy, rollouts, scores.rewards, cfg, iteration)
    with torch.no_grad():
        new_logprobs = token_logprobs(policy, rollouts, length_buckets=cfg.length_buckets)  # (B, T): pi_{i+1}
    train_seconds = time.perf_counter() - start
    # 4. Log: reward, accuracy, length, KL(pi_i || pi_{i+1}), entropy, time (the checkpoint is train_rl's).
    mask = rollouts.mask.float()  # (B, T)
    fresh = mask if rollouts.sampled_in is None else mask * (rollouts.sampled_in == iteration).float()  # pi_i's
    extra = dict(accuracy=scores.accuracy)
    if scores.length_reward is not None:
        extra["length_reward"] = scores.length_reward
    return dict(
        iteration=iteration,
        reward=float(scores.rewards.mean()),
        response_tokens=float(rollouts.lengths.float().mean()),
        truncated=sum(r == "length" for r in rollouts.finish_reason) / len(rollouts),
        kl_prev=float((kl_k3(new_logprobs - rollouts.logprobs) * fresh).sum() / len(rollouts)),
        entropy=float(-(rollouts.logprobs * fresh).sum() / fresh.sum().clamp(min=1)),
        loss=float(loss),
        rollout_seconds=rollout_seconds,
        train_seconds=train_seconds,
        tokens_per_second=float(mask.sum()) / (rollout_seconds + train_seconds),
        **batch.log,
        **extra,
    )


_MAY_CHANGE_ON_RESUME = {"iterations", "eval_every", "eval_problems", "checkpoint_every", "collapse_accuracy"}


def _check_same_run(saved: dict, now: dict, run_dir: Path) -> None:
    """Resuming with other settings would splice two different runs; only the schedule may change."""
    saved = {**asdict(RLConfig()), **saved}  # settings added since the checkpoint was written had their defaults
    changed = {key for key in saved.keys() | now.keys() if saved.get(key) != now.get(key)} - _MAY_CHANGE_ON_RESUME
    if changed:
        diffs = ", ".join(f"{key} = {saved.get(key)!r} there, {now.get(key)!r} here" for key in sorted(changed))
        raise ValueError(
            f"{run_dir} holds a run with other settings ({diffs}): resume it with its own settings, or start "
            "the new run in another directory"
        )


def _problem_pool(policy, tokenizer, cfg: RLConfig, task_cfg, meta: dict | None) -> ProblemPool | None:
    """The training pool of a pool sampler: its counts from the checkpoint, or new (and filtered)."""
    if cfg.sampling == "fresh":
        return None
    pool = ProblemPool.build(cfg.pool_size, cfg.seed, task_cfg)
    if meta and "pool" in meta:
        pool.load_state_dict(meta["pool"])
    elif cfg.guess_filter:
        pool.active = [not hit for hit in guessable(policy, tokenizer, pool.problems, seed=cfg.seed)]
    return pool


class TrainingCollapsed(ValueError):
    """The held-out accuracy collapsed (see ``RLConfig.collapse_accuracy``); the run's checkpoint is kept."""


#: Fewer held-out problems than this can all be missed by chance; a collapse is not judged on them.
COLLAPSE_MIN_PROBLEMS = 64


def collapse_reason(history: list[dict], cfg: RLConfig) -> str | None:
    """Why the run has collapsed, or None: the last row's held-out accuracy is 0 after an earlier one, or
    the first iteration's training accuracy (the starting policy's), was above ``cfg.collapse_accuracy``."""
    if cfg.collapse_accuracy == 0 or cfg.eval_problems < COLLAPSE_MIN_PROBLEMS or not history:
        return None
    if history[-1].get("eval_accuracy", 1.0) > 0:
        return None
    earlier = [(row["eval_accuracy"], row["iteration"], "held-out") for row in history[:-1] if "eval_accuracy" in row]
    if history[0].get("iteration") == 0 and "reward" in history[0]:
        earlier.append((history[0].get("accuracy", history[0]["reward"]), 0, "training"))
    best = max(earlier, default=None)
    if best is None or best[0] <= cfg.collapse_accuracy:
        return None
    return (
        f"held-out accuracy fell to 0 at iteration {history[-1]['iteration']} after {best[0]:.2f} ({best[2]}) at "
        f"iteration {best[1]}"
    )


def memory_estimate(policy, cfg: RLConfig, prompt_tokens: int) -> dict[str, int]:
    """Bytes an iteration needs on the policy's device, known before anything is sampled.

    With B rows (``prompts_per_iteration x group_size``, or ``eval_problems`` if more), P prompt and T
    budget tokens, V the vocabulary, L layers: ``least`` is what sampling allocates whatever the
    responses' lengths: token ids and log-probs for the whole budget (B x T x 12 bytes), logits,
    probabilities and noise over the vocabulary (3 x B x V x 4), the prefill's logits at every prompt
    position of the N distinct prompts (N x P x V x 4; N x P rows of a 151,936-word vocabulary are what a
    hub model's evaluation fills first) and the prompts' KV cache (2 x L x B x P x kv_width x bytes per
    weight). ``most`` is the worst case, every response running to
    T tokens: the whole KV cache, or the training pass's logits and activations, whichever is larger."""
    c = getattr(policy.config, "text_config", None) or policy.config  # a vision policy: its language model's
    B = max(cfg.prompts_per_iteration * cfg.group_size, cfg.eval_problems)
    P, T, V, L, H = prompt_tokens, cfg.max_new_tokens, c.vocab_size, c.num_hidden_layers, c.hidden_size
    heads = c.num_attention_heads
    kv_width = getattr(c, "num_key_value_heads", None) or heads
    kv_width *= getattr(c, "head_dim", None) or H // heads
    size = next(policy.parameters()).element_size()
    N = max(cfg.prompts_per_iteration, cfg.eval_problems)  # distinct prompts of one sample() call
    least = B * T * 12 + 3 * B * V * 4 + N * P * V * 4 + 2 * L * B * P * kv_width * size
    train_rows = cfg.prompts_per_iteration * cfg.group_size
    if cfg.micro_batch_groups:
        train_rows = min(train_rows, cfg.micro_batch_groups * cfg.group_size)
    per_token = 2 * V * 4 + L * (6 * H + 4 * getattr(c, "intermediate_size", 4 * H)) * size  # logits, activations
    most = least + max(2 * L * B * T * kv_width * size, train_rows * (P + T) * per_token)
    return dict(least=least, most=most)


def _check_memory(policy, tokenizer, cfg: RLConfig, task_cfg) -> dict[str, int]:
    """Refuse settings whose sampling alone cannot fit the device's free memory (ValueError, one line)."""
    prompt = policy_prompts(make_problems(1, seed=0, cfg=task_cfg), tokenizer, cfg.prompt_style)[0]
    estimate = memory_estimate(policy, cfg, len(tokenizer(prompt)["input_ids"]))
    device = next(policy.parameters()).device
    free = available_memory(device)
    if free is not None and estimate["least"] > free:
        raise ValueError(
            f"these settings need at least {estimate['least'] / 2**30:.1f} GiB on {device} to sample "
            f"({cfg.prompts_per_iteration} prompts x {cfg.group_size} responses x {cfg.max_new_tokens} tokens), "
            f"and {free / 2**30:.1f} GiB is free: lower prompts_per_iteration, group_size or max_new_tokens"
        )
    return estimate


def _out_of_memory(err: RuntimeError, estimate: dict[str, int], device) -> MemoryError | None:
    """A one-line MemoryError for torch's out-of-memory errors (CUDA's, or the CPU allocator's)."""
    text = str(err)
    if "out of memory" not in text.lower() and "allocate memory" not in text:
        return None
    return MemoryError(
        f"out of memory on {device} ({text.strip().splitlines()[0][:160]}): these settings may need up to "
        f"{estimate['most'] / 2**30:.1f} GiB when responses run to max_new_tokens; lower prompts_per_iteration, "
        "group_size or max_new_tokens, or set micro_batch_groups"
    )


def train_rl(
    policy,
    tokenizer,
    cfg: RLConfig,
    run_dir: str | Path,
    task_cfg=None,
    resume: bool = True,
    progress: bool = True,
    reward_fn=None,
) -> list[dict]:
    """Run ``cfg.iterations`` RL iterations, logging to ``run_dir``; resume from its checkpoint if any.

    Returns the metrics, one dict per iteration (also in ``run_dir/metrics.jsonl``). Resuming may extend
    ``iterations`` (or change evaluation and checkpoint intervals), but raises ValueError if any other
    setting differs from the checkpoint's. The run holds ``run_dir`` (:func:`kimi_mini.rundir.run_lock`):
    ValueError if another process writes there. Raises FloatingPointError naming the iteration if the loss
    becomes non-finite, :class:`TrainingCollapsed` (after writing the checkpoint) if the held-out accuracy
    collapses, ValueError if the settings cannot fit the device's memory and MemoryError if it runs out.

    ``reward_fn``, if given, scores the responses in place of the verifier: a reward function with TRL's
    interface, ``f(prompts, completions, numbers, target, **kwargs) -> list[float]`` (such as
    :func:`kimi_mini.reward_models.reward_function`, chapter 10). Its values are the ``reward`` (and what a
    problem pool or length reward counts as correct); the verifier's mean is still logged as ``accuracy``.
    It is not part of the checkpoint: resume a run with the same function.
    """
    run_dir, task_cfg = Path(run_dir), task_cfg or TaskConfig()
    if cfg.modality != "text" and not is_vision_policy(policy):
        raise ValueError(
            f"RLConfig.modality = {cfg.modality!r} needs a vision policy (kimi_mini.vision.build_vision_policy, or "
            "the shipped warmup-cpu-tiny-vision); this policy reads text only: use modality = 'text'"
        )
    with run_lock(run_dir):
        remove_leftovers(run_dir)
        meta = load_checkpoint(run_dir, policy) if resume else None
        if meta:
            _check_same_run(meta["config"], asdict(cfg), run_dir)
        estimate = _check_memory(policy, tokenizer, cfg, task_cfg)
        try:
            return _train_loop(policy, tokenizer, cfg, run_dir, task_cfg, meta, progress, reward_fn)
        except RuntimeError as err:
            oom = _out_of_memory(err, estimate, next(policy.parameters()).device)
            if oom is None:
                raise
            raise oom from err


def _train_loop(
    policy, tokenizer, cfg: RLConfig, run_dir: Path, task_cfg, meta: dict | None, progress: bool, reward_fn=None
):
    history = meta["history"] if meta else []
    buffer = ReplayBuffer.from_state_dict(meta.get("buffer", {"groups": []})) if meta else ReplayBuffer()
    first = meta["iteration"] + 1 if meta else 0
    pool = _problem_pool(policy, tokenizer, cfg, task_cfg, meta)
    bar = tqdm(range(first, cfg.iterations), desc="RL", disable=not progress, initial=first, total=cfg.iterations)
    for iteration in bar:
        row = rl_iteration(policy, tokenizer, cfg, iteration, task_cfg, buffer, pool, reward_fn)
        if (iteration + 1) % cfg.eval_every == 0 or iteration + 1 == cfg.iterations:
            row.update(heldout_metrics(policy, tokenizer, cfg, task_cfg))
        history.append(row)
        if "reward" in row:
            bar.set_postfix(reward=f"{row['reward']:.2f}", tokens=f"{row['response_tokens']:.0f}")
        collapse = collapse_reason(history, cfg)
        if collapse or (iteration + 1) % cfg.checkpoint_every == 0 or iteration + 1 == cfg.iterations:
            save_checkpoint(run_dir, policy, iteration, history, cfg, buffer, pool)
            write_atomically(
                run_dir / "metrics.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in history))
            )
        if collapse:
            raise TrainingCollapsed(
                f"the run in {run_dir} collapsed: {collapse} (a learning rate too high?). Its checkpoint and "
                "metrics are kept; to train on regardless, resume it with collapse_accuracy = 0 "
                "(the same kimi-mini train command with --resume --collapse-accuracy 0 added)"
            )
    return history
