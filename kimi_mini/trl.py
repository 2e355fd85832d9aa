"""kimi_mini's task and rewards as reward functions for Hugging Face TRL's ``GRPOTrainer``.

To scale out, run the same pieces on an engine built for many GPUs instead of kimi_mini's single-process
loop. ``GRPOTrainer`` (with ``accelerate``) samples ``num_generations`` completions per prompt and calls
each reward function on a batch of completions with the dataset's other columns as keyword arguments;
the rewards are summed (with ``reward_weights``). Here:

- :func:`countdown_dataset`: Countdown-mini problems as a ``datasets.Dataset`` with ``prompt``, ``numbers``
  and ``target`` columns;
- :func:`countdown_reward`: the verifier's 0/1 reward (report 2.3.1);
- :func:`make_length_reward`: the k1.5 length reward *per prompt group, in tokens* (report 2.3.3), not the
  batch-wide, character-counting ``len_reward`` of open-r1 (chapter 7 shows the difference). TRL puts the
  ``num_generations`` completions of a prompt next to each other in a batch; the function checks that it
  does (the prompts of each group must be equal) rather than assume it.

TRL is an optional dependency (``pip install kimi-mini[trl]``); importing this module does not import it.
Chapter 9 (planned) builds on it; tested in ``tests/test_trl.py`` with a 2-step run on the CPU.
"""

from __future__ import annotations

import torch

from .config import TaskConfig
from .rewards import length_penalty, penalty_weight
from .tasks import Problem, make_problems, prompt_text, verify

__all__ = ["countdown_dataset", "countdown_reward", "make_length_reward"]


def countdown_dataset(n: int, seed: int, task_cfg=None):
    """``n`` problems as a ``datasets.Dataset`` of ``prompt`` (text), ``numbers`` and ``target``."""
    from datasets import Dataset

    problems = make_problems(n, seed=seed, cfg=task_cfg or TaskConfig())
    return Dataset.from_list([dict(prompt=prompt_text(p), numbers=list(p.numbers), target=p.target) for p in problems])


def _text(completion) -> str:
    """A completion as text: TRL passes strings, or for chat datasets a list with one message dict."""
    return completion if isinstance(completion, str) else completion[0]["content"]


def countdown_reward(completions, numbers, target, **kwargs) -> list[float]:
    """The verifier's reward, 1.0 or 0.0, for each completion (a ``GRPOTrainer`` reward function)."""
    return [float(verify(Problem(tuple(n), t), _text(c))) for c, n, t in zip(completions, numbers, target)]


def make_length_reward(num_generations: int, weight: float = 1.0, warmup_steps: int = 0):
    """A ``GRPOTrainer`` reward function: ``weight`` x k1.5's per-group length reward, lengths in tokens
    (``completion_ids``), 0 during the first ``warmup_steps`` optimizer steps (TRL passes the trainer
    state as ``trainer_state``). ``num_generations`` must equal ``GRPOConfig.num_generations``."""

    def k15_length_reward(prompts, completions, completion_ids, numbers, target, **kwargs) -> list[float]:
        if len(prompts) % num_generations:
            raise ValueError(f"a batch of {len(prompts)} completions is not made of groups of {num_generations}")
        for start in range(0, len(prompts), num_generations):
            if len({str(p) for p in prompts[start : start + num_generations]}) != 1:
                raise ValueError(
                    f"completions {start}..{start + num_generations - 1} answer different prompts: the length "
                    "reward needs each prompt's num_generations completions next to each other"
                )
        state = kwargs.get("trainer_state")
        step = state.global_step if state is not None else warmup_steps
        if penalty_weight(weight, warmup_steps, step) == 0.0:
            return [0.0] * len(prompts)
        correct = torch.tensor(countdown_reward(completions, numbers, target))
        lengths = torch.tensor([len(ids) for ids in completion_ids])
        return (weight * length_penalty(lengths, correct, num_generations)).tolist()

    return k15_length_reward
