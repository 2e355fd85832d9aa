"""The shipped warm-up policy: train it once, save it as safetensors, load it in every chapter.

Training the warm-up takes about 20 minutes on one CPU thread, too long to repeat in every chapter, so
the repository ships the result (2.6 MB) in ``kimi_mini/checkpoints/warmup-cpu-tiny`` and ``make warmup``
regenerates it: same seed, same data, same steps. ``metrics.json`` beside the weights records how it was
made (settings, versions, threads, time, the SHA-256 of the weights) and how well it does.

The shipped checkpoints (:data:`SHIPPED_DIR`) are read-only to every command: writing a policy always
needs an explicit destination, and replacing a shipped one needs ``replace_shipped=True``
(``kimi-mini warmup --out kimi_mini/checkpoints/warmup-cpu-tiny --replace-shipped``, as ``make warmup`` does).

Introduced in {ref}`ch1-shipped`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from .config import Config, get_preset
from .device import get_device, versions
from .evaluation import evaluate_policy, summarize_by_difficulty
from .policy import build_policy, count_parameters, load_local_policy, save_policy
from .rundir import SHIPPED_DIR, SHIPPED_WARMUPS, is_shipped, sha256_of
from .sft import train_sft
from .tasks import make_problems
from .tokenizer import build_char_tokenizer

__all__ = [
    "SHIPPED_DIR",
    "WARMUP_DIR",
    "SHIPPED_WARMUPS",
    "EVAL_SEED",
    "train_warmup_policy",
    "load_warmup_policy",
    "check_writable",
    "sha256_of",
]

WARMUP_DIR = SHIPPED_WARMUPS["cpu-tiny"]
#: Seed of the held-out evaluation problems (training problems come from ``SFTConfig.seed``'s stream).
EVAL_SEED = 12345


def check_writable(path: str | Path, replace_shipped: bool = False, preset: str | None = None) -> Path:
    """``path``, if a command may write a policy or a run there: ValueError for the shipped checkpoints,
    unless ``replace_shipped`` and ``path`` is the shipped warm-up of ``preset`` itself."""
    path = Path(path)
    if not is_shipped(path):
        return path
    own = SHIPPED_WARMUPS.get(preset)
    if replace_shipped and own is not None and path.resolve() == own.resolve():
        return path
    if replace_shipped:
        raise ValueError(
            f"--replace-shipped replaces the shipped warm-up of preset {preset!r} ({own}) only, not {path}"
            if own is not None
            else f"preset {preset!r} has no shipped warm-up to replace: choose another --out"
        )
    raise ValueError(
        f"{path} is inside the shipped checkpoints ({SHIPPED_DIR}), which commands never overwrite: choose "
        "another directory (to regenerate a shipped warm-up on purpose, use `make warmup`)"
    )


def train_warmup_policy(
    cfg: Config | None = None,
    out_dir: str | Path | None = None,
    n_eval: int = 512,
    progress: bool = True,
    device: torch.device | str | None = None,
    replace_shipped: bool = False,
    preset: str = "cpu-tiny",
) -> dict:
    """Build the tiny policy, run the warm-up SFT on ``device``, save it to ``out_dir`` and evaluate it.

    ``out_dir`` is required; the shipped warm-up of ``preset`` is replaced only with ``replace_shipped``
    (:func:`check_writable`). ``device`` defaults to :func:`kimi_mini.device.get_device` (CUDA when there
    is one); the weights are saved from wherever they trained, and the evaluation samples there too.

    Returns (and writes to ``out_dir/metrics.json``) the training metrics, a sampled evaluation on
    ``n_eval`` held-out problems by difficulty, and the provenance of the weights.
    """
    if out_dir is None:
        raise ValueError("train_warmup_policy needs out_dir, the directory to write the policy to")
    check_writable(out_dir, replace_shipped, preset)
    cfg = cfg or get_preset("cpu-tiny")
    if cfg.model.vision:  # the joint text and image warm-up over the cpu-tiny one (chapter 11)
        from .vision import train_joint_warmup

        return train_joint_warmup(cfg, out_dir, n_eval=n_eval, progress=progress, device=device or "cpu")
    tokenizer = build_char_tokenizer()
    torch.manual_seed(cfg.sft.seed)
    model = build_policy(cfg.model, tokenizer)
    device = get_device() if device is None else device
    train = train_sft(model, tokenizer, cfg.sft, cfg.task, device=device, progress=progress)
    out_dir = save_policy(model, tokenizer, out_dir)
    problems = make_problems(n_eval, EVAL_SEED, cfg.task)
    records = evaluate_policy(model, tokenizer, problems, cfg.sample, progress=progress)
    metrics = dict(
        config=asdict(cfg),
        parameters=count_parameters(model),
        train=train,
        eval=summarize_by_difficulty(records),
        versions=versions(),
        sha256=sha256_of(out_dir / "model.safetensors"),
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def load_warmup_policy(device: torch.device | str = "cpu", path: str | Path = WARMUP_DIR):
    """``(model, tokenizer)`` of the shipped warm-up policy (or the policy directory ``path``), in eval mode
    on ``device``: :func:`kimi_mini.policy.load_local_policy` (its errors name what is missing, and for the
    shipped warm-up the command that regenerates it)."""
    return load_local_policy(path, device, regenerate="make warmup")
