"""Partial rollouts (report 2.6.2): a token budget per iteration, a replay buffer, masked stale segments.

A synchronous iteration waits for its longest response. With partial rollouts each iteration gives every
trajectory at most ``segment_tokens`` new tokens; a trajectory that has not finished waits in a
:class:`ReplayBuffer` and the next iteration continues it (prompt and earlier segments re-encoded with the
current weights, then decoding goes on), beside new prompts that keep the batch full. Each token remembers
the iteration that sampled it and its log-prob under that iteration's policy.

A group (the k samples of one prompt) enters the loss once, whole, in the iteration where its last
trajectory finishes, because its baseline needs all k rewards (or, with ``wait_for_group=False``, each
trajectory alone in the iteration it ends, :attr:`PartialStep.ended`). With ``mask_stale_segments`` (the default,
the report's "excluded from the loss", slime's ``--mask-offpolicy-in-partial-rollout``) only the tokens
sampled in the current iteration count in the loss; otherwise every segment counts, with its own
iteration's log-probs as the "old" ones (verl's fully asynchronous mode).

Repeat detection ends a trajectory whose last ``repeat_times`` blocks of some length between 2 and
``repeat_block`` tokens are identical: finish reason ``"repeat"``, cut right after the repeats.

Introduced in {ref}`ch6-buffer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .rollout import Rollouts, response_text, sample
from .sampling import ProblemPool, iteration_problems
from .tasks import Problem, policy_prompts

__all__ = [
    "Segment",
    "Trajectory",
    "Group",
    "ReplayBuffer",
    "PartialStep",
    "find_repeat",
    "partial_rollout_step",
    "assemble",
]

#: Added to an iteration's seed for the continued rows' sampling noise, so it differs from the new rows'.
CONTINUATION_SEED_OFFSET = 500_009


@dataclass
class Segment:
    """Tokens sampled in one iteration, with their log-probs under that iteration's policy."""

    iteration: int
    ids: list[int]
    logprobs: list[float]


@dataclass
class Trajectory:
    segments: list[Segment] = field(default_factory=list)
    finish_reason: str | None = None  # "eos", "length" or "repeat"; None while unfinished

    @property
    def ids(self) -> list[int]:
        return [t for s in self.segments for t in s.ids]

    def __len__(self) -> int:
        return sum(len(s.ids) for s in self.segments)


@dataclass
class Group:
    """The k trajectories of one problem, started in iteration ``started``."""

    problem: Problem
    started: int
    trajectories: list[Trajectory]
    index: int | None = None  # the problem's place in the training pool (pool samplers, chapter 8)

    @property
    def done(self) -> bool:
        return all(t.finish_reason is not None for t in self.trajectories)


@dataclass
class ReplayBuffer:
    """Groups with at least one unfinished trajectory; part of every checkpoint (JSON)."""

    groups: list[Group] = field(default_factory=list)

    def unfinished(self) -> list[tuple[Group, Trajectory]]:
        return [(g, t) for g in self.groups for t in g.trajectories if t.finish_reason is None]

    def state_dict(self) -> dict:
        return dict(
            groups=[
                dict(
                    numbers=list(g.problem.numbers),
                    target=g.problem.target,
                    started=g.started,
                    index=g.index,
                    trajectories=[
                        dict(finish_reason=t.finish_reason, segments=[s.__dict__ for s in t.segments])
                        for t in g.trajectories
                    ],
                )
                for g in self.groups
            ]
        )

    @classmethod
    def from_state_dict(cls, state: dict) -> ReplayBuffer:
        return cls(
            [
                Group(
                    Problem(tuple(g["numbers"]), g["target"]),
                    g["started"],
                    [Trajectory([Segment(**s) for s in t["segments"]], t["finish_reason"]) for t in g["trajectories"]],
                    g.get("index"),
                )
                for g in state["groups"]
            ]
        )


def find_repeat(ids: list[int], start: int, block: int, times: int) -> int | None:
    """The first end position ``e > start`` where ``ids[e - n * times : e]`` is one block of ``n`` tokens
    (``2 <= n <= block``) repeated ``times`` times, or None. Only ends after ``start`` are checked (the
    earlier ones were checked when their segment was sampled)."""
    if times < 2 or block < 2:
        raise ValueError(f"find_repeat needs times >= 2 and block >= 2; got times = {times}, block = {block}")
    for end in range(start + 1, len(ids) + 1):
        for n in range(2, block + 1):
            if n * times > end:
                break
            unit = ids[end - n : end]
            if all(ids[end - n * (r + 1) : end - n * r] == unit for r in range(1, times)):
                return end
    return None


@dataclass
class PartialStep:
    """What one iteration of partial rollouts sampled: the groups that finished (to learn from), the
    problems it started, and counts of the work done."""

    finished: list[Group]  # groups whose k trajectories all ended, now out of the buffer
    new_problems: list[Problem]  # problems of the groups started this iteration
    carried_rows: int  # trajectories continued from earlier iterations
    new_groups: int  # groups started
    generated_tokens: int = 0  # tokens sampled this iteration
    seconds: float = 0.0  # the sampler's wall time
    steps: int = 0  # the sampler's decoding steps
    row_steps: int = 0  # token slots the sampler computed
    ended: list[tuple[Group, Trajectory]] = field(default_factory=list)  # trajectories that ended this iteration


def partial_rollout_step(
    policy,
    tokenizer,
    buffer: ReplayBuffer,
    cfg,
    iteration: int,
    seed: int,
    task_cfg,
    compact_every: float = 0.125,
    pool: ProblemPool | None = None,
) -> PartialStep:
    """One iteration of sampling: continue the buffer's trajectories, start new groups to fill
    ``cfg.prompts_per_iteration * cfg.group_size`` rows, cut everything at ``cfg.segment_tokens`` new
    tokens. New problems come from ``pool`` with ``cfg.sampling`` when a pool is given (each group keeps
    its pool index), else fresh. Finished groups leave the buffer and are returned in a
    :class:`PartialStep` with the problems started and the tokens and decoding steps sampled.
    ``compact_every`` goes to :func:`kimi_mini.rollout.sample`."""
    k, capacity = cfg.group_size, cfg.prompts_per_iteration * cfg.group_size
    carried = buffer.unfinished()
    n_new = max(0, (capacity - len(carried)) // k)
    problems, indices = iteration_problems(cfg, iteration, seed, task_cfg, pool)
    # The first n_new of the iteration's draw: with an empty buffer, exactly plain rollouts' problems.
    problems, indices = problems[:n_new], indices[:n_new]
    groups = [Group(p, iteration, [Trajectory() for _ in range(k)], i) for p, i in zip(problems, indices)]
    step = PartialStep(finished=[], new_problems=problems, carried_rows=len(carried), new_groups=n_new)
    calls = []
    if carried:  # continued rows: prompt + prefix re-encoded with the current weights, then decoding goes on
        cont = sample(
            policy,
            tokenizer,
            policy_prompts([g.problem for g, _ in carried], tokenizer, cfg.prompt_style),
            1,
            [min(cfg.segment_tokens, cfg.max_new_tokens - len(t)) for _, t in carried],
            cfg.temperature,
            seed=seed + CONTINUATION_SEED_OFFSET,
            compact_every=compact_every,
            prefixes=[t.ids for _, t in carried],
        )
        calls.append((cont, [t for _, t in carried]))
    if problems:  # new groups (with nothing carried: exactly plain rollouts, cut at the segment budget)
        fresh = sample(
            policy,
            tokenizer,
            policy_prompts(problems, tokenizer, cfg.prompt_style),
            k,
            min(cfg.segment_tokens, cfg.max_new_tokens),
            cfg.temperature,
            seed=seed,
            compact_every=compact_every,
        )
        calls.append((fresh, [t for g in groups for t in g.trajectories]))
    # Two sampler calls, not one batch: a new row would be left-padded to the longest carried prefix.
    for rollouts, trajectories in calls:
        _extend(rollouts, trajectories, iteration, cfg)
        step.seconds += rollouts.stats["seconds"]
        step.steps += rollouts.stats["steps"]
        step.row_steps += rollouts.stats["row_steps"]
        step.generated_tokens += rollouts.stats["tokens"]
    step.ended = [(g, t) for g, t in carried + [(g, t) for g in groups for t in g.trajectories] if t.finish_reason]
    buffer.groups.extend(groups)
    step.finished = [g for g in buffer.groups if g.done]
    buffer.groups = [g for g in buffer.groups if not g.done]
    return step


def _extend(rollouts: Rollouts, trajectories: list[Trajectory], iteration: int, cfg) -> None:
    """Append each row's new tokens to its trajectory as a segment; mark finished ones."""
    for i, traj in enumerate(trajectories):
        n = int(rollouts.lengths[i])
        before = len(traj)
        traj.segments.append(
            Segment(iteration, rollouts.response_ids[i, :n].tolist(), rollouts.logprobs[i, :n].tolist())
        )
        repeat_end = find_repeat(traj.ids, before, cfg.repeat_block, cfg.repeat_times) if cfg.repeat_times else None
        if repeat_end is not None:
            keep = repeat_end - before
            last = traj.segments[-1]
            last.ids, last.logprobs = last.ids[:keep], last.logprobs[:keep]
            traj.finish_reason = "repeat"
        elif rollouts.finish_reason[i] == "eos":
            traj.finish_reason = "eos"
        elif len(traj) >= cfg.max_new_tokens:
            traj.finish_reason = "length"


def assemble(
    groups: list[Group], tokenizer, iteration: int, temperature: float, mask_stale: bool, prompt_style: str = "trace"
) -> Rollouts:
    """Finished groups as one :class:`Rollouts` for the loss: whole trajectories, their recorded
    log-probs as ``logprobs``, and a ``loss_mask`` that keeps only this iteration's tokens if ``mask_stale``."""
    trajs = [t for g in groups for t in g.trajectories]
    k = len(groups[0].trajectories)
    prompts = policy_prompts([g.problem for g in groups], tokenizer, prompt_style)
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    T = max(len(t) for t in trajs)
    response_ids = torch.full((len(trajs), T), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
    logprobs = torch.zeros((len(trajs), T))  # (B, T): log-probs under the policy that sampled each token
    sampled_in = torch.full((len(trajs), T), -1, dtype=torch.long)  # (B, T): iteration of each token
    for i, t in enumerate(trajs):
        n = len(t)
        response_ids[i, :n] = torch.tensor(t.ids, dtype=torch.long)
        logprobs[i, :n] = torch.tensor([lp for s in t.segments for lp in s.logprobs])
        sampled_in[i, :n] = torch.tensor([s.iteration for s in t.segments for _ in s.ids])
    mask = sampled_in >= 0  # (B, T)
    texts = [response_text(tokenizer, t.ids, t.finish_reason) for t in trajs]
    return Rollouts(
        prompts=prompts,
        group_size=k,
        prompt_ids=enc["input_ids"].repeat_interleave(k, dim=0),  # (B, P): k contiguous rows per prompt
        prompt_mask=enc["attention_mask"].repeat_interleave(k, dim=0),  # (B, P)
        response_ids=response_ids,
        logprobs=logprobs,
        mask=mask,
        finish_reason=[t.finish_reason for t in trajs],
        texts=texts,
        temperature=temperature,
        loss_mask=mask & (sampled_in == iteration) if mask_stale else mask,  # (B, T)
        sampled_in=sampled_in,
    )
