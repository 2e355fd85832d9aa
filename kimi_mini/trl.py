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

- :class:`OMDTrainer`: ``GRPOTrainer`` with k1.5's mirror-descent loss (report 2.3.2, the same formula as
  :func:`kimi_mini.losses.omd_loss`) in place of GRPO's clipped ratio. TRL computes the group baseline
  (``advantages = r - mean`` with ``scale_rewards="none"``) and, with ``num_iterations > 1`` (kimi_mini's
  ``grad_steps``), the sampling policy's log-probs pi_i; the subclass only replaces the loss. One
  difference stays: TRL keeps its optimizer state across generations, the report resets it every
  iteration.

TRL is an optional dependency (``pip install kimi-mini[trl]``); importing this module does not import it
(``OMDTrainer`` is built on first use). Chapter 9 runs it; tested in ``tests/test_trl.py`` with 2-step
runs on the CPU.
"""

from __future__ import annotations

import functools

import torch

from .config import TaskConfig
from .losses import sequence_log_ratio
from .rewards import length_penalty, penalty_weight
from .tasks import Problem, make_problems, prompt_text, verify

__all__ = ["countdown_dataset", "countdown_reward", "make_length_reward", "omd_per_sequence"]  # and OMDTrainer


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


def omd_per_sequence(rho: torch.Tensor, advantages: torch.Tensor, tau: float) -> torch.Tensor:
    """(B,) k1.5's surrogate per sequence, (A_j - tau * rho_j)^2 / (2 tau), with A_j = r_j - r_bar from TRL
    and rho_j the sequence log-ratio log pi_theta(y_j|x) - log pi_i(y_j|x): :func:`kimi_mini.losses.omd_loss`
    is its mean (report 2.3.2)."""
    return (advantages - tau * rho) ** 2 / (2 * tau)


@functools.cache
def _omd_trainer_class():
    from trl import GRPOTrainer

    class OMDTrainer(GRPOTrainer):
        """``GRPOTrainer`` with Kimi k1.5's online mirror descent loss (report 2.3.2).

        ``OMDTrainer(model, reward_funcs, args, ..., tau=1.0)``; ``args`` must set ``scale_rewards="none"``
        (the loss needs r - r_bar, not a z-score) and ``beta=0`` (tau is the loss's own KL term). Set
        ``num_iterations`` to the gradient steps per batch of samples (kimi_mini's ``grad_steps``).
        """

        def __init__(self, *args, tau: float = 1.0, **kwargs):
            if not tau > 0:
                raise ValueError(f"tau = {tau} is invalid: it must be > 0")
            super().__init__(*args, **kwargs)
            if self.scale_rewards != "none":
                raise ValueError(
                    f"OMDTrainer needs GRPOConfig(scale_rewards='none'), not {self.scale_rewards!r}: k1.5's loss "
                    "uses r - mean(r) of the group, not rewards divided by their standard deviation"
                )
            if self.beta != 0.0:
                raise ValueError(f"OMDTrainer needs GRPOConfig(beta=0.0), not {self.beta}: tau is OMD's KL term")
            self.tau = tau

        def _compute_loss(self, model, inputs):
            prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]  # (B, P), (B, T)
            mask = inputs["completion_mask"]  # (B, T)
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + T)
            attention_mask = torch.cat([inputs["prompt_mask"], mask], dim=1)  # (B, P + T)
            logps, _, _ = self._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, completion_ids.size(1)
            )  # (B, T)
            old = inputs.get("old_per_token_logps")  # (B, T), absent when pi_i is the current policy
            old = logps.detach() if old is None else old
            rho = sequence_log_ratio(logps, old, mask)  # (B,)
            per_sequence = omd_per_sequence(rho, inputs["advantages"], self.tau)  # (B,)
            mode = "train" if model.training else "eval"
            mean_abs_rho = rho.detach().abs().mean()
            self._metrics[mode]["omd/log_ratio_abs"].append(self.accelerator.gather(mean_abs_rho).mean().item())
            normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            return per_sequence.mean() / normalizer

    return OMDTrainer


def __getattr__(name: str):
    if name == "OMDTrainer":  # built on first use, so that importing kimi_mini.trl does not import trl
        return _omd_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
