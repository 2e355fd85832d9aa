"""Configuration: flat dataclasses with one documented, validated field each.

Every field is declared with :func:`option`, which stores its docstring and its allowed range in the
field's metadata. ``__post_init__`` checks every field against that range, so an invalid value raises a
``ValueError`` that names the field, the value and what is allowed. Presets (:data:`PRESETS`) bundle
the whole set: ``"cpu-tiny"`` is the book's default, ``"gpu"`` runs the same code bigger.

Introduced in {ref}`ch1-config`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TaskConfig",
    "ModelConfig",
    "SFTConfig",
    "SampleConfig",
    "RLConfig",
    "LOSSES",
    "SEARCH_STYLES",
    "Config",
    "PRESETS",
    "get_preset",
    "get_rl_preset",
    "risky_settings",
    "LR_WARNING_FACTOR",
    "option",
    "part",
    "Validated",
]

#: Warm-up search styles (:attr:`TaskConfig.search_style`): a search that backtracks, one that stops at its
#: first candidate (chapter 5's control for whether RL can lengthen a search on its own), and a short chain
#: of thought that writes only the line that hits.
SEARCH_STYLES = ("backtrack", "first", "short")


def option(default: Any, doc: str, *, lo=None, hi=None, lo_open=False, choices=None, optional=False):
    """A dataclass field with a docstring and an allowed range kept in its metadata.

    ``lo``/``hi`` bound numbers (``lo_open=True`` excludes ``lo``), ``choices`` lists the allowed
    values, ``optional=True`` also allows ``None``.
    """
    meta = dict(doc=doc, lo=lo, hi=hi, lo_open=lo_open, choices=choices, optional=optional)
    return field(default=default, metadata=meta)


def part(cls: type, doc: str):
    """A dataclass field holding a nested config part (validated by its own class)."""
    return field(
        default_factory=cls, metadata=dict(doc=doc, lo=None, hi=None, lo_open=False, choices=None, optional=False)
    )


def _allowed(meta: dict) -> str:
    """Human-readable allowed range of a field, for error messages and docs."""
    if meta["choices"] is not None:
        text = "one of " + ", ".join(repr(c) for c in meta["choices"])
    else:
        lo, hi = meta["lo"], meta["hi"]
        left = "(" if meta["lo_open"] else "["
        text = f"in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    return text + (" or None" if meta["optional"] else "")


def _check_field(obj: Any, f: dataclasses.Field) -> None:
    """Raise ValueError if ``obj.<f.name>`` is outside the range declared in the field's metadata."""
    meta, value = f.metadata, getattr(obj, f.name)
    if value is None and meta["optional"]:
        return
    if meta["choices"] is not None:  # the same type too: 1 is not True
        ok = any(value == c and type(value) is type(c) for c in meta["choices"])
    elif f.default is dataclasses.MISSING:  # a nested part
        ok = isinstance(value, f.default_factory)
    elif f.default is None or isinstance(f.default, str):  # optional fields here are strings
        ok = isinstance(value, str)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False
    else:
        ok = math.isfinite(value)
        ok = ok and (meta["lo"] is None or (value > meta["lo"] if meta["lo_open"] else value >= meta["lo"]))
        ok = ok and (meta["hi"] is None or value <= meta["hi"])
        ok = ok and not (isinstance(f.default, int) and not isinstance(value, int))
    if not ok:
        name = f"{type(obj).__name__}.{f.name}"
        raise ValueError(f"{name} = {value!r} is invalid: it must be {_allowed(meta)}. ({meta['doc']})")


class Validated:
    """Mixin for config dataclasses whose fields are made with :func:`option` or :func:`part`: every field is
    validated on construction (ValueError naming the field and its allowed range); ``describe()`` lists the
    fields with their docs. Subclasses override ``_check_combinations`` for rules across fields."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(self, f)
        self._check_combinations()

    def _check_combinations(self) -> None:
        """Checks that involve more than one field (overridden where needed)."""

    @classmethod
    def describe(cls) -> str:
        rows = [
            f"{f.name} = {f.default!r}: {f.metadata['doc']} ({_allowed(f.metadata)})" for f in dataclasses.fields(cls)
        ]
        return "\n".join(rows)


@dataclass
class TaskConfig(Validated):
    """The Countdown-mini task: reach a target from three small numbers with + - *."""

    min_number: int = option(1, "Smallest number in a problem.", lo=0, hi=9)
    max_number: int = option(5, "Largest number in a problem (single digits keep the trace short).", lo=1, hi=9)
    guess_fraction: float = option(
        0.5, "Share of warm-up examples that answer with a short guess instead of searching.", lo=0.0, hi=1.0
    )
    search_style: str = option(
        "backtrack",
        "How warm-up searches run: 'backtrack' tries candidates until one hits (search_trace); 'first' checks "
        "one candidate and answers with it, hit or miss (first_candidate_trace); 'short' writes only the line "
        "that hits, then the answer (short_trace: a short chain of thought).",
        choices=SEARCH_STYLES,
    )

    def _check_combinations(self) -> None:
        if self.max_number <= self.min_number:
            raise ValueError(
                f"TaskConfig.max_number = {self.max_number} is invalid: it must be greater than "
                f"min_number = {self.min_number}, so problems have at least two distinct numbers."
            )


@dataclass
class ModelConfig(Validated):
    """The policy: a tiny Llama-style causal LM, or a pretrained model by name."""

    hidden_size: int = option(128, "Width of the residual stream.", lo=8, hi=8192)
    num_layers: int = option(4, "Number of transformer blocks.", lo=1, hi=128)
    num_heads: int = option(4, "Attention heads per block; must divide hidden_size.", lo=1, hi=128)
    intermediate_size: int = option(256, "Width of the MLP inside each block.", lo=8, hi=32768)
    max_positions: int = option(
        512, "Longest sequence (prompt + response) the policy can read, in tokens.", lo=16, hi=131072
    )
    name_or_path: str | None = option(
        None, "Hub name or local directory of a pretrained model; None builds the tiny model.", optional=True
    )
    vision: bool = option(
        False,
        "A LLaVA-style policy: a tiny CLIP vision encoder and projector over the tiny Llama policy, which then "
        "reads images too (chapter 11).",
        choices=(False, True),
    )

    def _check_combinations(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"ModelConfig.num_heads = {self.num_heads} is invalid: it must divide hidden_size = {self.hidden_size}."
            )


@dataclass
class SFTConfig(Validated):
    """The long-CoT warm-up (paper 2.2): supervised fine-tuning on search traces."""

    steps: int = option(3000, "Optimizer steps.", lo=1, hi=10_000_000)
    batch_size: int = option(32, "Examples per step.", lo=1, hi=65536)
    lr: float = option(3e-3, "Peak learning rate of AdamW.", lo=0.0, lo_open=True, hi=1.0)
    min_lr: float = option(2e-4, "Final learning rate of the cosine schedule.", lo=0.0, hi=1.0)
    warmup_steps: int = option(100, "Steps of linear learning-rate warm-up.", lo=0, hi=10_000_000)
    weight_decay: float = option(0.01, "AdamW weight decay.", lo=0.0, hi=1.0)
    grad_clip: float = option(1.0, "Clip the gradient norm to this value.", lo=0.0, lo_open=True, hi=1e6)
    seed: int = option(0, "Seed for the data and the initial weights.", lo=0, hi=2**32 - 1)
    log_every: int = option(50, "Record metrics every this many steps.", lo=1, hi=10_000_000)

    def _check_combinations(self) -> None:
        if self.min_lr > self.lr:
            raise ValueError(f"SFTConfig.min_lr = {self.min_lr} is invalid: it must be at most lr = {self.lr}.")


@dataclass
class SampleConfig(Validated):
    """Sampling responses from the policy."""

    max_new_tokens: int = option(480, "Longest response, in tokens.", lo=1, hi=131072)
    temperature: float = option(1.0, "Softmax temperature; 0 means greedy decoding.", lo=0.0, hi=10.0)
    batch_size: int = option(128, "Prompts decoded together.", lo=1, hi=65536)


LOSSES = ("omd", "reinforce", "grpo", "rest")
SAMPLERS = ("fresh", "uniform", "curriculum", "prioritized")
MODALITIES = ("text", "rendered", "dots", "image", "joint")  # kimi_mini.vision.MODALITY_MIXES


@dataclass
class RLConfig(Validated):
    """An RL run (the loop is :func:`kimi_mini.train.train_rl`)."""

    # The run and its samples (report 2.3.1): k responses to each of the iteration's problems.
    iterations: int = option(10, "RL iterations.", lo=1, hi=1_000_000)
    prompts_per_iteration: int = option(16, "Problems sampled per iteration.", lo=1, hi=65536)
    group_size: int = option(8, "Responses sampled per problem (the report's k).", lo=1, hi=1024)
    max_new_tokens: int = option(480, "Longest response, in tokens.", lo=1, hi=131072)
    temperature: float = option(1.0, "Sampling temperature.", lo=0.0, lo_open=True, hi=10.0)
    seed: int = option(0, "Seed of the problems and the sampling noise.", lo=0, hi=2**31 - 1)
    prompt_style: str = option(
        "trace",
        "Prompts: trace (the tiny policy's '4 3 5 -> 17'), or chat (an instruction in the tokenizer's chat "
        "template, for a pretrained instruction model; chapter 9).",
        choices=("trace", "chat"),
    )
    modality: str = option(
        "text",
        "What the problems come as (chapter 11; image kinds need a vision policy): text, rendered (the numbers drawn "
        "as an image), dots (counted dots and noisy digits), image (rendered and dots in turn) or joint (all three).",
        choices=MODALITIES,
    )

    # The loss and its optimizer (2.3.2): a fresh AdamW every iteration.
    loss: str = option("omd", "Policy loss: omd (k1.5), reinforce, grpo or rest.", choices=LOSSES)
    tau: float = option(
        1.0,
        "Strength of the KL regulariser of the omd loss (the report's tau); ignored by the other losses.",
        lo=0.0,
        lo_open=True,
        hi=1e6,
    )
    clip_eps: float = option(
        0.2, "PPO clipping range of the grpo loss; ignored by the other losses.", lo=0.0, lo_open=True, hi=10.0
    )
    lr: float = option(1e-4, "AdamW learning rate.", lo=0.0, lo_open=True, hi=1.0)
    grad_steps: int = option(4, "Optimizer steps per iteration on the same samples.", lo=1, hi=10_000)

    # The length reward (2.3.3), and DAPO's overlong punishment for comparison (chapter 7).
    length_penalty: float = option(
        0.0, "Weight of k1.5's per-group length reward added to the verifier's (chapter 7); 0: off.", lo=0.0, hi=100.0
    )
    length_penalty_warmup: int = option(
        0,
        "Iterations of plain RL before the length reward starts; ignored when length_penalty = 0.",
        lo=0,
        hi=1_000_000,
    )
    overlong_buffer: int = option(
        0, "DAPO's soft overlong punishment over the last this many tokens of the budget; 0: off.", lo=0, hi=131072
    )

    # Which problems to train on (2.3.4, and the guess filter of 2.1; chapter 8).
    sampling: str = option(
        "fresh",
        "Problems per iteration: fresh ones, or from a fixed pool: uniform, curriculum or prioritized (chapter 8).",
        choices=SAMPLERS,
    )
    pool_size: int = option(512, "Training problems in the pool; ignored when sampling = fresh.", lo=1, hi=10_000_000)
    curriculum_switch: int = option(
        8,
        "Iterations on every problem before training on hard ones only; ignored unless sampling = curriculum.",
        lo=0,
        hi=1_000_000,
    )
    guess_filter: bool = option(
        False,
        "Drop problems the starting policy answers right without reasoning in 8 tries; ignored when sampling = fresh.",
        choices=(False, True),
    )

    # Partial rollouts (2.6.2; chapter 6).
    partial_rollouts: bool = option(
        False, "Cap each iteration's new tokens per trajectory (chapter 6).", choices=(False, True)
    )
    segment_tokens: int = option(
        128, "New tokens per trajectory per iteration; ignored unless partial_rollouts.", lo=1, hi=131072
    )
    mask_stale_segments: bool = option(
        True,
        "Leave tokens sampled by earlier iterations out of the loss; ignored unless partial_rollouts.",
        choices=(True, False),
    )
    wait_for_group: bool = option(
        True,
        "Train a group once all k trajectories ended (group-mean baseline); False: train each trajectory in the "
        "iteration it ends, with the mean reward of all trajectories ending then as its baseline; ignored unless "
        "partial_rollouts.",
        choices=(True, False),
    )
    repeat_times: int = option(
        3,
        "Stop a trajectory whose last block repeats this often (0: never); ignored unless partial_rollouts.",
        lo=0,
        hi=1000,
    )
    repeat_block: int = option(
        64, "Longest block (tokens) repeat detection looks for; ignored when repeat_times = 0.", lo=2, hi=4096
    )
    repeat_penalty: float = option(
        0.0,
        "Reward subtracted from a trajectory stopped for repeating; ignored when repeat_times = 0.",
        lo=0.0,
        hi=10.0,
    )

    # Speed and memory only: the same gradients either way.
    length_buckets: int = option(4, "Forward passes per step, rows grouped by length (less padding).", lo=1, hi=1024)
    micro_batch_groups: int = option(
        0,
        "Groups per forward/backward pass of a gradient step, gradients summed (exact for omd, reinforce, grpo); "
        "0: the whole batch at once.",
        lo=0,
        hi=65536,
    )

    # Evaluation, checkpoints and the collapse guard.
    eval_every: int = option(5, "Evaluate on held-out problems every this many iterations.", lo=1, hi=1_000_000)
    eval_problems: int = option(128, "Held-out problems per evaluation.", lo=1, hi=1_000_000)
    checkpoint_every: int = option(1, "Write a checkpoint every this many iterations.", lo=1, hi=1_000_000)
    collapse_accuracy: float = option(
        0.2,
        "Stop the run, its checkpoint kept, when held-out accuracy falls to 0 after having been above this "
        "(or after the first iteration's training accuracy was); judged with eval_problems >= 64 only; 0: never.",
        lo=0.0,
        hi=1.0,
    )

    def _check_combinations(self) -> None:
        if self.group_size == 1 and self.loss == "grpo":
            raise ValueError(
                "RLConfig.group_size = 1 is invalid with loss = 'grpo': GRPO divides by the standard deviation of "
                "each group's rewards, which needs at least 2 responses per problem."
            )
        if self.repeat_times == 1:
            raise ValueError(
                "RLConfig.repeat_times = 1 is invalid: it must be 0 (no repeat detection) or at least 2 "
                "(a block must occur twice in a row to be a repeat)."
            )
        if self.sampling != "fresh" and self.pool_size < self.prompts_per_iteration:
            raise ValueError(
                f"RLConfig.pool_size = {self.pool_size} is invalid: it must be at least prompts_per_iteration = "
                f"{self.prompts_per_iteration}."
            )
        if self.guess_filter and self.prompt_style != "trace":
            raise ValueError(
                "RLConfig.guess_filter = True is invalid with prompt_style = 'chat': the filter forces the "
                "tiny policy's answer line right after a trace prompt."
            )
        if self.modality != "text":
            for name, value, fine in (
                ("partial_rollouts", self.partial_rollouts, False),
                ("guess_filter", self.guess_filter, False),
            ):
                if value != fine:
                    raise ValueError(
                        f"RLConfig.{name} = {value!r} is invalid with modality = {self.modality!r}: it must be "
                        f"{fine!r} (partial rollouts and the guess filter re-encode prompts as text)."
                    )
        if self.partial_rollouts and not self.wait_for_group:
            for name, value, fine in (
                ("sampling", self.sampling, "fresh"),
                ("length_penalty", self.length_penalty, 0.0),
                ("micro_batch_groups", self.micro_batch_groups, 0),
            ):
                if value != fine:
                    raise ValueError(
                        f"RLConfig.{name} = {value!r} is invalid with wait_for_group = False: it must be {fine!r} "
                        "(those settings need whole groups, and trajectories then enter the loss one by one)."
                    )
        if self.overlong_buffer > self.max_new_tokens:
            raise ValueError(
                f"RLConfig.overlong_buffer = {self.overlong_buffer} is invalid: it must be at most "
                f"max_new_tokens = {self.max_new_tokens}."
            )


def _check_budget_fits(field: str, max_new_tokens: int, model: ModelConfig, where: str = "") -> None:
    """A response budget plus a prompt of up to 16 tokens must fit the policy's ``max_positions``."""
    if max_new_tokens + 16 > model.max_positions:
        raise ValueError(
            f"{field} = {max_new_tokens} is invalid{where}: with a prompt of up to 16 tokens it must be at most "
            f"ModelConfig.max_positions - 16 = {model.max_positions - 16}."
        )


@dataclass
class Config(Validated):
    """All settings of a run, grouped by part."""

    task: TaskConfig = part(TaskConfig, "The task.")
    model: ModelConfig = part(ModelConfig, "The policy.")
    sft: SFTConfig = part(SFTConfig, "The warm-up.")
    sample: SampleConfig = part(SampleConfig, "Sampling.")

    def _check_combinations(self) -> None:
        if self.model.name_or_path is None:
            _check_budget_fits("SampleConfig.max_new_tokens", self.sample.max_new_tokens, self.model)


#: Steps of the joint warm-up's second stage (reasoning on text and images) in the cpu-tiny-vision preset.
VISION_WARMUP_STEPS = 1000

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # 0.66M parameters; everything in the book runs with this on 2 CPU cores.
    "cpu-tiny": {},
    # 2.4 times fewer parameters (0.28M): the smaller policy of chapter 5's size comparison.
    "cpu-small": {"model": dict(hidden_size=96, num_layers=3, num_heads=4, intermediate_size=192)},
    # Chapter 5's controls for mode choice: warm-ups with no guesses (searches only), and with searches
    # that stop at their first candidate (no backtracking); same policy, steps and data stream otherwise.
    "cpu-tiny-search-only": {"task": dict(guess_fraction=0.0)},
    "cpu-tiny-first-candidate": {"task": dict(guess_fraction=0.0, search_style="first")},
    # A short-CoT warm-up: only the line that hits, then the answer (the report's short-CoT regime, 2.4).
    "cpu-tiny-short-cot": {"task": dict(guess_fraction=0.0, search_style="short")},
    # Joint text and image training (chapter 11): the cpu-tiny warm-up given eyes, fine-tuned on text and
    # image traces together, then RL on all three kinds of problem in turn.
    "cpu-tiny-vision": {
        "model": dict(vision=True),
        "sft": dict(steps=VISION_WARMUP_STEPS, lr=1e-3, warmup_steps=20, log_every=20),
        "sample": dict(max_new_tokens=256),
        "rl": dict(modality="joint", max_new_tokens=256, iterations=16, eval_problems=96),
    },
    # The same code, bigger: a 25M-parameter policy, numbers up to 9, a 2k-token context.
    "gpu": {
        "task": dict(max_number=9),
        "model": dict(hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1376, max_positions=2048),
        "sft": dict(steps=6000, batch_size=128, lr=1e-3, min_lr=1e-4),
        "sample": dict(max_new_tokens=1536, batch_size=512),
        "rl": dict(prompts_per_iteration=64, group_size=16, max_new_tokens=1536, eval_problems=512, segment_tokens=512),
    },
}


def get_preset(name: str = "cpu-tiny", **overrides: dict[str, Any]) -> Config:
    """Build the :class:`Config` of a preset, with optional per-part overrides.

    >>> get_preset("cpu-tiny", sft=dict(steps=10)).sft.steps
    10
    """
    if name not in PRESETS:
        raise ValueError(f"preset = {name!r} is invalid: it must be one of {', '.join(map(repr, PRESETS))}.")
    parts = {"task": TaskConfig, "model": ModelConfig, "sft": SFTConfig, "sample": SampleConfig}
    unknown = set(overrides) - set(parts)
    if unknown:
        raise ValueError(f"unknown config part(s) {sorted(unknown)}: the parts are {sorted(parts)}.")
    kwargs = {}
    for part, cls in parts.items():
        values = {**PRESETS[name].get(part, {}), **overrides.get(part, {})}
        kwargs[part] = cls(**values)
    return Config(**kwargs)


def get_rl_preset(name: str = "cpu-tiny", check_positions: bool = True, **overrides: Any) -> RLConfig:
    """The :class:`RLConfig` of a preset (its ``rl`` part), with optional field overrides.

    With ``check_positions`` (for the preset's own policy; pass False for another, pretrained one) the
    response budget must fit: ``max_new_tokens`` plus a 16-token prompt at most ``max_positions``.

    >>> get_rl_preset("gpu").max_new_tokens
    1536
    """
    model = get_preset(name).model  # validates the name
    cfg = RLConfig(**{**PRESETS[name].get("rl", {}), **overrides})
    if check_positions:
        _check_budget_fits("RLConfig.max_new_tokens", cfg.max_new_tokens, model, f" for preset {name!r}")
    return cfg


#: ``risky_settings`` warns when RLConfig.lr exceeds the preset's by more than this factor. Measured on
#: cpu-tiny, 4 iterations from the shipped warm-up (training reward 0.57 in the first): held-out accuracy
#: (64 problems) after them was 0.52 at 10 times the preset's lr, 0.03 at 30 times, and 0 at 100 times,
#: with 95% of the responses cut at the budget.
LR_WARNING_FACTOR = 10


def risky_settings(cfg: RLConfig, preset: str = "cpu-tiny") -> list[str]:
    """Valid settings that usually waste a run, one sentence each (``kimi-mini train`` prints them).

    - ``group_size = 1`` with a loss that subtracts the group's mean reward (omd, reinforce): every
      advantage r - r_bar is 0, so nothing is learned;
    - an ``lr`` more than :data:`LR_WARNING_FACTOR` times the preset's: steps that large wreck the policy
      within a few iterations (reward 0, every response cut at the budget).
    """
    out = []
    if cfg.group_size == 1 and cfg.loss in ("omd", "reinforce"):
        out.append(
            f"group_size = 1 with loss = {cfg.loss!r}: each response is its own group, so r - r_bar is always 0 "
            "and the policy learns nothing; use group_size >= 2"
        )
    reference = get_rl_preset(preset, check_positions=False).lr
    if cfg.lr > LR_WARNING_FACTOR * reference:
        out.append(
            f"lr = {cfg.lr:g} is {cfg.lr / reference:.0f} times the {preset} preset's {reference:g}: a learning "
            f"rate more than {LR_WARNING_FACTOR} times it wrecks the policy within a few iterations"
        )
    return out
