"""The shipped warm-up policy: train it once, save it as safetensors, load it in every chapter.

Training the warm-up takes about 20 minutes on one CPU thread, too long to repeat in every chapter, so
the repository ships the result (2.6 MB) in ``kimi_mini/checkpoints/warmup-cpu-tiny`` and ``make warmup``
regenerates it: same seed, same data, same steps. ``metrics.json`` beside the weights records how it was
made (settings, versions, threads, time, the SHA-256 of the weights) and how well it does.

Introduced in {ref}`ch1-shipped`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .config import Config, get_preset
from .device import get_device, versions
from .evaluation import evaluate_policy, summarize_by_difficulty
from .policy import build_policy, count_parameters, load_policy, save_policy
from .sft import train_sft
from .tasks import make_problems
from .tokenizer import build_char_tokenizer

__all__ = ["WARMUP_DIR", "EVAL_SEED", "train_warmup_policy", "load_warmup_policy", "sha256_of"]

WARMUP_DIR = Path(__file__).parent / "checkpoints" / "warmup-cpu-tiny"
#: Seed of the held-out evaluation problems (training problems come from ``SFTConfig.seed``'s stream).
EVAL_SEED = 12345


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_warmup_policy(
    cfg: Config | None = None,
    out_dir: str | Path = WARMUP_DIR,
    n_eval: int = 512,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> dict:
    """Build the tiny policy, run the warm-up SFT on ``device``, save it to ``out_dir`` and evaluate it.

    ``device`` defaults to :func:`kimi_mini.device.get_device` (CUDA when there is one); the weights are
    saved from wherever they trained, and the evaluation samples there too.

    Returns (and writes to ``out_dir/metrics.json``) the training metrics, a sampled evaluation on
    ``n_eval`` held-out problems by difficulty, and the provenance of the weights.
    """
    cfg = cfg or get_preset("cpu-tiny")
    tokenizer = build_char_tokenizer()
    torch.manual_seed(cfg.sft.seed)
    model = build_policy(cfg.model, tokenizer)
    device = get_device() if device is None else device
    train = train_sft(model, tokenizer, cfg.sft, cfg.task, device=device, progress=progress)
    out_dir = save_policy(model, tokenizer, out_dir)
    records = evaluate_policy(model, tokenizer, make_problems(n_eval, EVAL_SEED, cfg.task), cfg.sample)
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
    """``(model, tokenizer)`` of the shipped warm-up policy, in eval mode on ``device``.

    Raises FileNotFoundError with the command that regenerates it if the checkpoint is missing.
    """
    path = Path(path)
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no warm-up policy at {path}: run `make warmup` (or `kimi-mini warmup --out {path}`).")
    model, tokenizer = load_policy(path, device)
    return model.eval(), tokenizer
