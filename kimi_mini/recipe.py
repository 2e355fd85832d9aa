"""The whole k1.5-mini recipe from one config: warm-up SFT, RL, long2short (report 2.2-2.4).

:func:`run_recipe` runs three stages into one directory, each from the one before:

1. ``warmup/``: the long-CoT warm-up, supervised fine-tuning on search traces (2.2, chapter 1);
2. ``rl/``: online mirror descent with partial rollouts, a problem sampler and the length penalty after
   its warm-up (2.3-2.6, chapters 3-8), the policy in ``rl/policy``;
3. ``long2short/``: shortest-correct rejection sampling from the RL policy, the long2short method that
   won in chapter 7 (2.4).

Every stage's policy is scored on the same held-out problems (one sample each, the RL budget), so the
results table (``results.json``) reads like the report's Table 2 in miniature: accuracy, mean tokens and
the stage's own time. A stage that finished is never redone: ``resume=True`` skips it (its time is
kept), and the RL stage resumes from its last checkpoint.

Introduced in {ref}`ch9-recipe`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from tqdm.auto import tqdm

from .config import PRESETS, RLConfig, SFTConfig, Validated, get_preset, get_rl_preset, option, part
from .device import get_device
from .long2short import fine_tune, shortest_correct
from .policy import load_local_policy, save_policy
from .rollout import sample
from .tasks import make_problems, prompt_text
from .train import heldout_metrics, train_rl
from .warmup import load_warmup_policy, train_warmup_policy

__all__ = ["Long2ShortConfig", "RecipeConfig", "RECIPE_RL", "recipe_config", "run_recipe", "STAGES"]

STAGES = ("warmup", "rl", "long2short")

#: The recipe's RL settings over a preset's: everything chapters 4-8 built, switched on together.
RECIPE_RL = dict(
    iterations=24,
    eval_every=4,
    partial_rollouts=True,
    sampling="prioritized",
    length_penalty=1.0,
    length_penalty_warmup=16,
)


@dataclass
class Long2ShortConfig(Validated):
    """Shortest-correct rejection sampling (report 2.4): sample, keep the shortest correct, fine-tune."""

    problems: int = option(256, "Training problems the long-CoT policy answers.", lo=1, hi=10_000_000)
    samples: int = option(8, "Responses per problem; the shortest correct one is kept.", lo=1, hi=1024)
    steps: int = option(64, "Fine-tuning steps on the kept responses.", lo=1, hi=10_000_000)
    lr: float = option(1e-4, "AdamW learning rate of the fine-tuning.", lo=0.0, lo_open=True, hi=1.0)
    batch_size: int = option(32, "Examples per fine-tuning step.", lo=1, hi=65536)
    seed: int = option(4242, "Seed of the problems and the sampling (one no RL iteration uses).", lo=0, hi=2**31 - 1)


@dataclass
class RecipeConfig(Validated):
    """Every setting of the whole recipe; :func:`recipe_config` fills it from a preset."""

    preset: str = option("cpu-tiny", "Task, policy size and sampling settings.", choices=tuple(PRESETS))
    sft: SFTConfig = part(SFTConfig, "Stage 1, the warm-up.")
    rl: RLConfig = part(RLConfig, "Stage 2, RL.")
    long2short: Long2ShortConfig = part(Long2ShortConfig, "Stage 3, long2short.")
    eval_problems: int = option(512, "Held-out problems every stage is scored on.", lo=1, hi=1_000_000)

    @property
    def task(self):
        """The preset's task: every stage trains and evaluates on its problems."""
        return get_preset(self.preset).task

    def to_dict(self) -> dict:
        return asdict(self)

    def _check_combinations(self) -> None:
        if self.rl.prompt_style != "trace":
            raise ValueError(
                f"RecipeConfig.rl.prompt_style = {self.rl.prompt_style!r} is invalid: the recipe trains its own "
                "policy on trace prompts; train a pretrained chat model with `kimi-mini train --prompt-style chat`."
            )


def recipe_config(preset: str = "cpu-tiny", **parts) -> RecipeConfig:
    """A preset's recipe, with overrides per part: ``recipe_config(rl=dict(iterations=8))``.

    ``parts`` may hold ``sft``, ``rl``, ``long2short`` (dicts of field values) and ``eval_problems``;
    the keys of a JSON recipe file are the same. Unknown parts or fields raise ValueError naming them.
    """
    get_preset(preset)  # validates the name
    known = {"sft": SFTConfig, "rl": RLConfig, "long2short": Long2ShortConfig}
    unknown = set(parts) - set(known) - {"eval_problems", "preset"}
    if unknown:
        raise ValueError(f"unknown recipe part(s) {sorted(unknown)}: the parts are {sorted(known)} and eval_problems")
    parts.pop("preset", None)
    for name, cls in known.items():
        given = parts.get(name, {})
        if not isinstance(given, dict):
            raise ValueError(f"recipe part {name!r} must be an object of {cls.__name__} fields, not {given!r}")
        bad = sorted(set(given) - {f.name for f in fields(cls)})
        if bad:
            raise ValueError(f"unknown {cls.__name__} field(s) {bad} in recipe part {name!r}")
    sft = replace(get_preset(preset).sft, **parts.get("sft", {}))
    rl = get_rl_preset(preset, **{**RECIPE_RL, **parts.get("rl", {})})
    long2short = Long2ShortConfig(**parts.get("long2short", {}))
    return RecipeConfig(preset, sft, rl, long2short, parts.get("eval_problems", 512))


def _with_new_defaults(saved: dict) -> dict:
    """A saved config with the settings added to kimi_mini since it was written, at their defaults."""
    parts = {"sft": SFTConfig, "rl": RLConfig, "long2short": Long2ShortConfig}
    return {**saved, **{name: {**asdict(cls()), **saved.get(name, {})} for name, cls in parts.items()}}


def _stage_done(path: Path) -> dict | None:
    done = path / "stage.json"
    return json.loads(done.read_text()) if done.exists() else None


def _finish_stage(path: Path, record: dict) -> dict:
    (path / "stage.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _evaluate(policy, tokenizer, cfg: RecipeConfig) -> dict:
    """One sample per held-out problem at the RL budget: the same problems for every stage."""
    return heldout_metrics(policy, tokenizer, replace(cfg.rl, eval_problems=cfg.eval_problems, seed=0), cfg.task)


def _warmup_stage(cfg: RecipeConfig, path: Path, start_from: Path | None, device, progress: bool) -> dict:
    if start_from is not None:  # an existing warm-up (e.g. the shipped one): copied, its recorded time kept
        shutil.copytree(start_from, path, dirs_exist_ok=True)
        made = json.loads((path / "metrics.json").read_text())
        seconds, source = made["train"]["seconds"], str(start_from)
    else:
        start = time.perf_counter()
        train_warmup_policy(replace(get_preset(cfg.preset), sft=cfg.sft), path, n_eval=1, progress=progress)
        seconds, source = time.perf_counter() - start, "trained"
    policy, tokenizer = load_warmup_policy(device, path)
    return dict(stage="warmup", seconds=seconds, source=source, **_evaluate(policy, tokenizer, cfg))


def _rl_stage(cfg: RecipeConfig, path: Path, warmup: Path, device, resume: bool, progress: bool) -> dict:
    policy, tokenizer = load_warmup_policy(device, warmup)
    start = time.perf_counter()
    history = train_rl(policy, tokenizer, cfg.rl, path, task_cfg=cfg.task, resume=resume, progress=progress)
    seconds = sum(row["rollout_seconds"] + row["train_seconds"] for row in history)  # across resumes
    save_policy(policy, tokenizer, path / "policy")
    return dict(
        stage="rl", seconds=seconds, wall_seconds=time.perf_counter() - start, **_evaluate(policy, tokenizer, cfg)
    )


def _long2short_stage(cfg: RecipeConfig, path: Path, long_dir: Path, device, progress: bool) -> dict:
    l2s = cfg.long2short
    policy, tokenizer = load_local_policy(long_dir, device)  # the RL stage's policy
    start = time.perf_counter()
    problems = make_problems(l2s.problems, seed=l2s.seed, cfg=cfg.task)
    rollouts = sample(
        policy, tokenizer, [prompt_text(p) for p in problems], l2s.samples, cfg.rl.max_new_tokens, 1.0, seed=l2s.seed
    )
    shortest = shortest_correct(problems, rollouts.texts, rollouts.lengths.tolist(), l2s.samples)
    if not shortest:
        raise ValueError(f"long2short: no correct response among {l2s.samples} samples of {l2s.problems} problems")
    losses = fine_tune(
        policy, tokenizer, shortest, steps=l2s.steps, lr=l2s.lr, batch_size=l2s.batch_size, progress=progress
    )
    seconds = time.perf_counter() - start
    save_policy(policy, tokenizer, path)
    tokens = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for _, r in shortest]  # + end of sequence
    kept = dict(
        examples=len(shortest),
        mean_tokens=sum(tokens) / len(tokens),
        sampled_tokens=float(rollouts.lengths.float().mean()),
    )
    evaluation = _evaluate(policy, tokenizer, cfg)
    return dict(stage="long2short", seconds=seconds, kept=kept, final_loss=losses[-1], **evaluation)


def run_recipe(
    cfg: RecipeConfig,
    out_dir: str | Path,
    resume: bool = False,
    warmup_from: str | Path | None = None,
    device=None,
    progress: bool = True,
) -> dict:
    """Run the stages into ``out_dir`` (``warmup/``, ``rl/``, ``long2short/``) and write ``results.json``.

    ``warmup_from``: copy this warm-up policy directory instead of training one (its recorded training
    time is reported). Without ``resume`` an ``out_dir`` that holds a stage is an error (no work is
    overwritten); with it, finished stages are skipped and RL continues from its checkpoint. Returns
    ``dict(config=..., stages=[row per stage])``; each row has ``eval_accuracy``, ``eval_tokens``,
    per-difficulty values and ``seconds`` (the stage's own time, evaluation excluded).
    """
    out = Path(out_dir)
    if not resume and out.exists() and any((out / s).exists() for s in STAGES):
        raise ValueError(f"{out} already holds a recipe run: pass resume=True (--resume) to continue it")
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if saved.exists() and _with_new_defaults(json.loads(saved.read_text())) != cfg.to_dict():
        raise ValueError(f"{out} holds a recipe run with another config ({saved}); use another directory")
    saved.write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    device = device or get_device()
    rows = []
    for stage in tqdm(STAGES, desc="recipe", disable=not progress):
        path = out / stage
        row = _stage_done(path)
        if row is None:
            path.mkdir(exist_ok=True)
            if stage == "warmup":
                row = _warmup_stage(cfg, path, Path(warmup_from) if warmup_from else None, device, progress)
            elif stage == "rl":
                row = _rl_stage(cfg, path, out / "warmup", device, resume, progress)
            else:
                row = _long2short_stage(cfg, path, out / "rl" / "policy", device, progress)
            _finish_stage(path, row)
        rows.append(row)
    result = dict(config=cfg.to_dict(), stages=rows)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
