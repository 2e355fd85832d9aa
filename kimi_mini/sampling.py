"""Which problems to train on (report 2.3.4): uniform, curriculum and prioritized sampling from a fixed pool.

By default (``RLConfig.sampling = "fresh"``) every iteration draws new problems from the task's generator,
so no problem is seen twice. The report's strategies need problems that come back: a pool of
``pool_size`` training problems, each with a running success rate s_i (correct answers over sampled
answers so far), from which each iteration draws ``prompts_per_iteration`` distinct problems:

- ``uniform``: every problem equally likely;
- ``curriculum``: the report's Fig. 9 schedule, every problem for the first ``curriculum_switch``
  iterations, then hard ones only (difficulty is the task's label: one solution among 27 expressions);
- ``prioritized``: probability proportional to 1 - s_i, so problems the policy always solves stop being
  drawn and problems it never solved are drawn most (a problem never tried has s_i = 0).

``guess_filter`` drops, before training, every pool problem the starting policy answers correctly
*without reasoning* in one of 8 tries: the response is forced to start with ``answer`` (the report drops
prompts that are easy to guess, such as multiple-choice questions). The pool's state (success counts,
dropped problems) is part of every checkpoint, so a resumed run draws what an uninterrupted one would.

Introduced in {ref}`ch8-samplers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import SAMPLERS
from .groups import by_group, group_chunks
from .search import direct_answers
from .tasks import Problem, make_problems, verify

__all__ = ["SAMPLERS", "POOL_SEED", "ProblemPool", "sampling_weights", "draw", "iteration_problems", "guessable"]

#: Seed of the training pool (plus the run's seed); held-out problems use their own seeds.
POOL_SEED = 20_000_003


@dataclass
class ProblemPool:
    """Training problems with running success counts; ``active[i]`` is False for filtered-out problems."""

    problems: list[Problem]
    successes: list[int] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.problems)
        self.successes = self.successes or [0] * n
        self.attempts = self.attempts or [0] * n
        self.active = self.active or [True] * n

    @classmethod
    def build(cls, size: int, seed: int, task_cfg) -> ProblemPool:
        return cls(make_problems(size, seed=POOL_SEED + seed, cfg=task_cfg))

    def success_rate(self) -> torch.Tensor:
        """(N,) s_i = correct / sampled answers so far; 0 for a problem never drawn."""
        attempts = torch.tensor(self.attempts, dtype=torch.float64)
        return torch.tensor(self.successes, dtype=torch.float64) / attempts.clamp(min=1)

    def record(self, indices: list[int], correct: torch.Tensor, group_size: int) -> None:
        """Add one iteration's results: ``correct`` (B,) 0/1 in contiguous groups, one per drawn index."""
        per_group = by_group(correct, group_size).sum(dim=1).tolist()  # (G,) hits per drawn problem
        if len(per_group) != len(indices):
            raise ValueError(f"{len(indices)} problem indices for {len(per_group)} groups of {group_size} results")
        for index, hits in zip(indices, per_group):
            self.successes[index] += int(hits)
            self.attempts[index] += group_size

    def state_dict(self) -> dict:
        """JSON-ready counts (the problems themselves are rebuilt from the seed)."""
        return dict(size=len(self.problems), successes=self.successes, attempts=self.attempts, active=self.active)

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != len(self.problems):
            raise ValueError(f"the checkpoint's pool has {state['size']} problems, this run's {len(self.problems)}")
        self.successes, self.attempts, self.active = (
            list(state["successes"]),
            list(state["attempts"]),
            list(state["active"]),
        )


def sampling_weights(pool: ProblemPool, sampler: str, iteration: int, curriculum_switch: int) -> torch.Tensor:
    """(N,) unnormalised probabilities of drawing each pool problem at ``iteration``."""
    if sampler not in SAMPLERS[1:]:
        raise ValueError(f"sampler = {sampler!r} is invalid: it must be one of {SAMPLERS[1:]}.")
    active = torch.tensor(pool.active, dtype=torch.float64)
    if sampler == "uniform":
        return active
    if sampler == "curriculum":
        if iteration < curriculum_switch:
            return active
        hard = torch.tensor([p.difficulty == "hard" for p in pool.problems], dtype=torch.float64)
        return active * hard
    return active * (1.0 - pool.success_rate())  # prioritized: proportional to 1 - s_i


def draw(pool: ProblemPool, sampler: str, iteration: int, n: int, seed: int, curriculum_switch: int = 0) -> list[int]:
    """``n`` distinct pool indices drawn with :func:`sampling_weights` (seeded by ``seed``).

    When fewer than ``n`` problems have a positive weight (every problem solved every time, say), the rest
    are drawn uniformly from the active problems, so an iteration always has ``n`` prompts.
    """
    weights = sampling_weights(pool, sampler, iteration, curriculum_switch)
    active = torch.tensor(pool.active, dtype=torch.float64)
    if int(active.sum()) < n:
        raise ValueError(f"only {int(active.sum())} active problems in the pool; {n} are needed per iteration")
    gen = torch.Generator().manual_seed(seed)
    positive = int((weights > 0).sum())
    first = torch.multinomial(weights, min(n, positive), replacement=False, generator=gen).tolist() if positive else []
    if len(first) < n:
        rest = active.clone()
        rest[first] = 0
        first += torch.multinomial(rest, n - len(first), replacement=False, generator=gen).tolist()
    return first


def iteration_problems(cfg, iteration: int, seed: int, task_cfg, pool: ProblemPool | None) -> tuple[list, list]:
    """An iteration's ``cfg.prompts_per_iteration`` problems and their pool indices: fresh ones from
    ``seed`` (indices None) without a pool, else a ``cfg.sampling`` draw from ``pool``."""
    if pool is None:
        return make_problems(cfg.prompts_per_iteration, seed=seed, cfg=task_cfg), [None] * cfg.prompts_per_iteration
    indices = draw(pool, cfg.sampling, iteration, cfg.prompts_per_iteration, seed, cfg.curriculum_switch)
    return [pool.problems[i] for i in indices], indices


def guessable(policy, tokenizer, problems: list[Problem], tries: int = 8, seed: int = 0) -> list[bool]:
    """For each problem: did one of ``tries`` answers *forced to start with* ``answer`` (no reasoning) hit?"""
    texts, _, _ = direct_answers(policy, tokenizer, problems, tries, seed=seed)  # (problems x tries,)
    return [any(verify(problem, t) for t in group) for problem, group in zip(problems, group_chunks(texts, tries))]
