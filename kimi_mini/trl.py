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
- :func:`check_whole_groups`: with several processes each one scores its own share of the batch, and TRL
  splits a prompt's group across processes whenever that share (``per_device_train_batch_size`` x
  ``steps_per_generation``) is not a multiple of ``num_generations``. TRL's own advantages survive that
  (it gathers the rewards first), a per-group reward does not: ``OMDTrainer`` refuses such settings when
  a length reward is among its reward functions, and the length reward itself fails on a partial group.

- :class:`OMDTrainer`: ``GRPOTrainer`` with k1.5's mirror-descent loss (report 2.3.2, the same formula as
  :func:`kimi_mini.losses.omd_loss`) in place of GRPO's clipped ratio. TRL computes the group baseline
  (``advantages = r - mean`` with ``scale_rewards="none"``) and, with ``num_iterations > 1`` (kimi_mini's
  ``grad_steps``), the sampling policy's log-probs pi_i; the subclass only replaces the loss. One
  difference stays: TRL keeps its optimizer state across generations, the report resets it every
  iteration. With vLLM generating (``use_vllm=True``) TRL also weighs each sequence by how much likelier
  pi_i made it than vLLM's sampler did (``vllm_importance_sampling_correction``, sequence modes only);
  ``OMDTrainer`` applies that weight to each sequence's surrogate.

TRL is an optional dependency (``pip install kimi-mini[trl]``); importing this module does not import it
(``OMDTrainer`` is built on first use). Chapter 9 runs it; tested in ``tests/test_trl.py`` with 2-step
runs on the CPU. :mod:`kimi_mini.scaleout` launches it on many processes (``tests/test_scaleout.py``
runs it on two).
"""

from __future__ import annotations

import functools

import torch

from .config import TaskConfig
from .groups import group_chunks
from .losses import omd_per_sequence, sequence_log_ratio
from .rewards import length_penalty, penalty_weight
from .tasks import Problem, instruction_text, make_problems, prompt_text, verify

__all__ = [
    "countdown_dataset",
    "countdown_reward",
    "make_length_reward",
    "check_whole_groups",
    "omd_per_sequence",
]  # and OMDTrainer


def countdown_dataset(n: int, seed: int, task_cfg=None, style: str = "trace"):
    """``n`` problems as a ``datasets.Dataset`` of ``prompt``, ``numbers`` and ``target``. ``style="trace"``:
    the prompt is the tiny policy's text; ``"chat"``: one user message with the instruction, which TRL
    puts in the tokenizer's chat template (a pretrained instruction model, as ``RLConfig.prompt_style``)."""
    from datasets import Dataset

    if style not in ("trace", "chat"):
        raise ValueError(f"style = {style!r} is invalid: it must be 'trace' or 'chat'")
    problems = make_problems(n, seed=seed, cfg=task_cfg or TaskConfig())

    def prompt(p):
        return prompt_text(p) if style == "trace" else [{"role": "user", "content": instruction_text(p)}]

    return Dataset.from_list([dict(prompt=prompt(p), numbers=list(p.numbers), target=p.target) for p in problems])


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
            raise ValueError(
                f"this process scores {len(prompts)} completions, not whole groups of num_generations = "
                f"{num_generations}, and the per-group length reward needs every group whole. With several "
                "processes TRL has split a group across them: make per_device_train_batch_size x "
                "steps_per_generation a multiple of num_generations (check_whole_groups); with one, pass "
                "make_length_reward the GRPOConfig's num_generations"
            )
        for g, group in enumerate(group_chunks(prompts, num_generations)):
            if len({str(p) for p in group}) != 1:
                start = g * num_generations
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

    k15_length_reward.num_generations = num_generations  # check_whole_groups reads it
    return k15_length_reward


def check_whole_groups(args, reward_funcs=()) -> None:
    """Raise ValueError if a process would score part of a prompt's group (``args``: a ``GRPOConfig``).

    Each process generates and scores ``per_device_train_batch_size * steps_per_generation`` completions
    of TRL's batch, in order: process 0 the first share, process 1 the next. TRL's ``RepeatSampler`` writes
    each prompt ``num_generations`` times in a row, so the groups stay whole on every process exactly when
    that share is a multiple of ``num_generations``; TRL itself only requires the whole batch to be. With
    one process the two are the same. A per-group reward in ``reward_funcs`` (:func:`make_length_reward`)
    must have been made for ``args.num_generations``.
    """
    share = args.per_device_train_batch_size * args.steps_per_generation
    if share % args.num_generations:
        raise ValueError(
            f"each process scores per_device_train_batch_size x steps_per_generation = {share} completions, not a "
            f"multiple of num_generations = {args.num_generations}: TRL would split a prompt's group across "
            "processes and the per-group length reward would see only part of it. Choose "
            "per_device_train_batch_size as a multiple of num_generations"
        )
    for func in reward_funcs:
        made_for = getattr(func, "num_generations", args.num_generations)
        if made_for != args.num_generations:
            raise ValueError(
                f"{func.__name__} was made for groups of {made_for}, but GRPOConfig.num_generations = "
                f"{args.num_generations}: pass num_generations={args.num_generations} to make_length_reward"
            )


_SEQUENCE_MODES = ("sequence_mask", "sequence_truncate")


def _check_omd_settings(config, reward_funcs) -> None:
    """What ``OMDTrainer`` needs of a ``GRPOConfig`` beyond TRL's own checks."""
    if config.use_vllm and getattr(config, "vllm_importance_sampling_correction", False):
        if getattr(config, "vllm_importance_sampling_mode", None) not in _SEQUENCE_MODES:
            raise ValueError(
                "OMDTrainer weighs whole sequences by vLLM's importance ratio: set vllm_importance_sampling_mode to "
                f"one of {_SEQUENCE_MODES}, not {config.vllm_importance_sampling_mode!r}"
            )
    funcs = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    per_group = [f for f in funcs if hasattr(f, "num_generations")]
    if per_group:
        check_whole_groups(config, per_group)


@functools.cache
def _omd_trainer_class():
    from trl import GRPOTrainer

    class OMDTrainer(GRPOTrainer):
        """``GRPOTrainer`` with Kimi k1.5's online mirror descent loss (report 2.3.2).

        ``OMDTrainer(model, reward_funcs, args, ..., tau=1.0)``; ``args`` must set ``scale_rewards="none"``
        (the loss needs r - r_bar, not a z-score) and ``beta=0`` (tau is the loss's own KL term). Set
        ``num_iterations`` to the gradient steps per batch of samples (kimi_mini's ``grad_steps``).

        It overrides one private method, ``GRPOTrainer._compute_loss(model, inputs)``, and calls another,
        ``_get_per_token_logps_and_entropies``; it reads ``inputs`` keys ``prompt_ids``, ``prompt_mask``,
        ``completion_ids``, ``completion_mask``, ``advantages``, ``old_per_token_logps`` and
        ``importance_sampling_ratio``, and the attributes ``scale_rewards``, ``beta``, ``use_vllm``,
        ``vllm_importance_sampling_correction``, ``current_gradient_accumulation_steps`` and ``_metrics``.
        Checked against TRL 1.16.0 (pinned in constraints.txt; tests/test_trl.py runs it); private names
        can change in any TRL release, so check them when upgrading.
        """

        def __init__(self, *args, tau: float = 1.0, **kwargs):
            if not tau > 0:
                raise ValueError(f"tau = {tau} is invalid: it must be > 0")
            config = kwargs.get("args", args[2] if len(args) > 2 else None)
            if config is not None:  # before TRL builds anything (a vLLM engine, say)
                _check_omd_settings(config, kwargs.get("reward_funcs", args[1] if len(args) > 1 else ()))
            super().__init__(*args, **kwargs)
            if self.scale_rewards != "none":
                raise ValueError(
                    f"OMDTrainer needs GRPOConfig(scale_rewards='none'), not {self.scale_rewards!r}: k1.5's loss "
                    "uses r - mean(r) of the group, not rewards divided by their standard deviation"
                )
            if self.beta != 0.0:
                raise ValueError(f"OMDTrainer needs GRPOConfig(beta=0.0), not {self.beta}: tau is OMD's KL term")
            self.tau = tau

        @property
        def _weighs_sequences(self) -> bool:
            return self.use_vllm and getattr(self, "vllm_importance_sampling_correction", False)

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
            if self._weighs_sequences:  # samples from vLLM, not pi_i: TRL's (B, 1) ratio pi_i(y) / p_vLLM(y)
                per_sequence = per_sequence * inputs["importance_sampling_ratio"].squeeze(-1)  # (B,)
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
