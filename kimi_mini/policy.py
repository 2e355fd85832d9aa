"""The policy: a tiny Llama-style causal LM, or a pretrained one loaded by name.

The tiny policy is a ``transformers.LlamaForCausalLM`` built from a ``LlamaConfig`` (0.66M parameters in
the ``cpu-tiny`` preset), so everything later in the book (KV-cached sampling, log-probs, saving) works
unchanged on a real pretrained model. Weights are saved as safetensors; loading never runs remote code.

Introduced in {ref}`ch1-policy`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from .config import ModelConfig
from .rundir import check_checksums, is_shipped, public_file, record_checksums

__all__ = ["build_policy", "count_parameters", "save_policy", "load_policy", "load_local_policy", "check_finite"]


def build_policy(cfg: ModelConfig, tokenizer) -> LlamaForCausalLM:
    """A randomly initialised Llama causal LM sized by ``cfg``, with tied input/output embeddings."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def save_policy(model: PreTrainedModel, tokenizer, path: str | Path) -> Path:
    """Save model (safetensors) and tokenizer to a directory that :func:`load_policy` reads, with the
    SHA-256 of every weight file in ``checksums.json`` (checked on load)."""
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    for weights in path.glob("*.safetensors"):
        public_file(weights)  # safetensors writes them 0600
    record_checksums(path)
    return path


def load_policy(
    name_or_path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` from a local directory or a hub name (e.g. ``"Qwen/Qwen2.5-0.5B"``).

    Only safetensors weights are read, and remote code runs only if you pass ``trust_remote_code=True``
    yourself. The tokenizer pads on the left (for batched generation) and gets a pad token if it has none.
    A model whose config has a vision part (a LLaVA-style policy, chapter 11) loads with
    ``AutoModelForImageTextToText``, every other with ``AutoModelForCausalLM``. A local directory's weights are checked against their recorded SHA-256 first, and every loaded weight
    must be finite: ValueError naming the file otherwise.
    """
    if Path(name_or_path).is_dir():
        check_checksums(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    # A vision-language policy (chapter 11) loads as one; every other policy as a causal LM.
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    model = auto.from_pretrained(name_or_path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    check_finite(model, f"the weights of {name_or_path} are damaged")
    return model.to(device), tokenizer


def load_local_policy(path: str | Path, device: torch.device | str = "cpu", regenerate: str | None = None):
    """``(model, tokenizer)`` of a policy directory (a warm-up, a long-CoT policy, the ``policy/`` folder of
    an RL run), in eval mode on ``device``: every loader of a local policy in the package comes here.

    Raises FileNotFoundError if there is no such directory (for a shipped one, with ``regenerate``, the
    command that makes it again) and ValueError saying what was found if it holds no safetensors weights,
    or if the weights are damaged.
    """
    path = Path(path)
    if not path.is_dir():
        if is_shipped(path) and regenerate:
            raise FileNotFoundError(f"no shipped policy at {path}: run `{regenerate}` to regenerate it")
        raise FileNotFoundError(f"no policy at {path}: {'it is a file' if path.exists() else 'it does not exist'}")
    if not (path / "model.safetensors").exists():
        raise ValueError(_no_weights(path))
    try:
        model, tokenizer = load_policy(path, device)
    except (ValueError, OSError):
        raise
    except Exception as err:  # safetensors' SafetensorError, a damaged config: one line, the directory named
        raise ValueError(f"{path} cannot be loaded as a policy ({type(err).__name__}: {err})") from err
    return model.eval(), tokenizer


def _no_weights(path: Path) -> str:
    """Why ``path`` is not a policy directory, from what it holds."""
    names = sorted(p.name for p in path.iterdir())
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    if pickles:
        return (
            f"{path} holds {', '.join(pickles)} but no model.safetensors: kimi_mini loads only safetensors "
            "weights, because loading a pickle file can run any code it contains. If you trust its source, "
            "convert it with transformers: AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR)"
        )
    found = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
    return (
        f"{path} holds no model.safetensors (found: {found}): pass a policy directory, such as one "
        "`kimi-mini warmup --out` wrote or the policy/ folder of a `kimi-mini train --out` run"
    )


def check_finite(model: torch.nn.Module, damaged: str) -> None:
    """ValueError ``damaged: N tensor(s) hold NaN ...`` if any of ``model``'s tensors is not finite."""
    bad = [name for name, tensor in model.state_dict().items() if not torch.isfinite(tensor).all()]
    if bad:
        raise ValueError(f"{damaged}: {len(bad)} tensor(s) hold NaN or infinite values ({bad[0]}, ...)")
