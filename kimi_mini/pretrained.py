"""A pretrained instruction model as the policy: the Colab path, and a local stand-in to test it here.

On a GPU the policy can be a real chat model from the hub, e.g. :data:`INSTRUCT_MODEL`: ``load_policy``
reads it (safetensors only, no remote code), ``RLConfig(prompt_style="chat")`` asks it the problems in
its chat template (:func:`kimi_mini.tasks.policy_prompts`), and the rest of the loop is unchanged.
:func:`colab_train_command` writes the command chapter 9 runs there.

Where nothing may be downloaded (this book's CI), :func:`save_stand_in_model` writes a model in the
same format: a tiny ``Qwen2ForCausalLM`` with random weights and a byte-level BPE tokenizer with a
ChatML chat template, saved with ``save_pretrained``, so ``load_policy`` takes the same code path as
for the hub model. It answers nothing right; it exercises the code.

Introduced in {ref}`ch9-gpu`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from .tasks import instruction_text, make_problems, prompt_text, search_trace

__all__ = ["INSTRUCT_MODEL", "CHATML_TEMPLATE", "save_stand_in_model", "colab_train_command"]

#: The real model chapter 9 suggests for a Colab GPU.
INSTRUCT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"

#: Qwen2.5's chat format (ChatML), without its default system prompt and tool calls.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _stand_in_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the task's instructions and traces, with ChatML tokens."""
    import random

    rng = random.Random(0)
    problems = make_problems(256, seed=7)
    corpus = [instruction_text(p) for p in problems] + [prompt_text(p) + search_trace(p, rng) for p in problems]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        padding_side="left",
    )


def save_stand_in_model(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2-format chat model (random weights, ~0.1M parameters) to ``path``; returns it."""
    tokenizer = _stand_in_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def colab_train_command(out: str = "runs/qwen", model: str = INSTRUCT_MODEL, iterations: int = 30) -> str:
    """The ``kimi-mini train`` command for a pretrained instruction model on one Colab GPU.

    The gpu preset's RL settings, scaled to a 0.5B model with a 151k-token vocabulary on a 40 GB GPU:
    32 problems x 8 samples, 1024-token responses in 512-token segments, one group per backward pass (the
    log-softmax over the vocabulary is the memory peak). Weights stay float32 (TF32 matmuls on CUDA):
    in bfloat16 an AdamW step of 1e-6 on a weight of 1e-2 is below the format's resolution and is lost.
    """
    flags = [
        f"--out {out}",
        "--preset gpu",
        f"--policy {model}",
        "--prompt-style chat",
        f"--iterations {iterations}",
        "--prompts-per-iteration 32",
        "--group-size 8",
        "--max-new-tokens 1024",
        "--segment-tokens 512",
        "--micro-batch-groups 1",
        "--lr 1e-6",
        "--eval-every 5",
        "--eval-problems 256",
    ]
    return "kimi-mini train " + " ".join(flags)
