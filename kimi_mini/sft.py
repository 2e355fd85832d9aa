"""The long-CoT warm-up: supervised fine-tuning on search traces (paper 2.2).

Before RL, k1.5 fine-tunes on a small set of verified long chains of thought that plan, evaluate,
reflect and explore. Here those are Countdown-mini search traces (:func:`kimi_mini.tasks.search_trace`),
mixed with a share of short guesses so that the warm-up policy still guesses sometimes and RL has room
to learn that searching pays (the report's Fig. 5: response length rises during RL).

The loss is the next-token cross-entropy on response tokens only (the prompt is masked with -100),
summed over a batch and divided by a *constant*, the expected number of response tokens in a batch. A
per-batch token mean would weigh a token by 1 / (tokens in its batch): with length-bucketed batches the
short guesses then carry ~30% of the loss on ~4% of the tokens, and the policy learns to guess far more
often than its data does (chapter 1 shows the measurement).

Introduced in {ref}`ch1-sft`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import SFTConfig, TaskConfig
from .tasks import make_problem, warmup_example

__all__ = ["encode_example", "collate", "warmup_batches", "mean_response_tokens", "sft_loss", "lr_at", "train_sft"]

IGNORE_INDEX = -100


def encode_example(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """Token ids of ``<bos> prompt response <eos>`` and labels with the prompt masked out."""
    prompt_ids = tokenizer(prompt)["input_ids"]  # starts with <bos>
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids + response_ids, [IGNORE_INDEX] * len(prompt_ids) + response_ids


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``(ids, labels)`` pairs into ``input_ids``, ``attention_mask`` and ``labels``, each (B, T)."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def warmup_batches(
    tokenizer, batch_size: int, seed: int, task_cfg: TaskConfig = TaskConfig(), bucket: int = 8
) -> Iterator[dict]:
    """An endless, seeded stream of warm-up batches (fresh problems every batch).

    Traces range from 10 to 460 characters, so a random batch is mostly padding. We draw ``bucket``
    batches' worth of examples at once, sort them by length, cut them into batches and shuffle those:
    each batch then holds similar lengths (the ``group_by_length`` trick of HF ``Trainer``).
    """
    rng = random.Random(seed)
    while True:
        pool = []
        for _ in range(batch_size * bucket):
            prompt, response = warmup_example(make_problem(rng, task_cfg), rng, task_cfg)
            pool.append(encode_example(tokenizer, prompt, response))
        pool.sort(key=lambda example: len(example[0]))
        chunks = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield collate(chunk, tokenizer.pad_token_id)


def mean_response_tokens(tokenizer, task_cfg: TaskConfig = TaskConfig(), n: int = 4096, seed: int = 0) -> float:
    """Mean number of response tokens (``<eos>`` included) of warm-up examples, from ``n`` seeded draws."""
    rng = random.Random(seed)
    total = 0
    for _ in range(n):
        prompt, response = warmup_example(make_problem(rng, task_cfg), rng, task_cfg)
        total += len(encode_example(tokenizer, prompt, response)[0]) - len(tokenizer(prompt)["input_ids"])
    return total / n


def sft_loss(model, batch: dict, norm_tokens: float) -> tuple[torch.Tensor, int]:
    """``(sum of response-token NLL / norm_tokens, number of response tokens)`` for one batch.

    With ``norm_tokens`` a constant (batch size x mean response tokens), every token weighs the same in
    whichever batch it lands; the mean of this loss over batches is the per-token NLL of the data.
    """
    images = {"pixel_values": batch["pixel_values"]} if "pixel_values" in batch else {}  # image rows only
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **images).logits  # (B, T, V)
    next_logits = logits[:, :-1].flatten(0, 1).float()  # (B * (T-1), V): position t predicts token t+1
    next_labels = batch["labels"][:, 1:].flatten()  # (B * (T-1),)
    nll = F.cross_entropy(next_logits, next_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return nll / norm_tokens, int((next_labels != IGNORE_INDEX).sum())


def lr_at(step: int, cfg: SFTConfig) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine decay from ``lr`` to ``min_lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def train_sft(
    model,
    tokenizer,
    cfg: SFTConfig = SFTConfig(),
    task_cfg: TaskConfig = TaskConfig(),
    device: torch.device | str = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
    batches: Iterator[dict] | None = None,
    mean_tokens: float | None = None,
) -> dict:
    """Fine-tune ``model`` on warm-up traces; return its metrics.

    ``stop_after`` ends the run early, after that many steps of the same schedule: the first steps of a
    long run are replayed exactly (chapter 1 uses it to check the shipped checkpoint's history).
    ``batches`` replaces the warm-up traces with another stream of batches (a batch may hold
    ``pixel_values`` for its image rows: the joint warm-up of chapter 11), ``mean_tokens`` its mean number
    of response tokens per example.

    The result holds ``history`` (one row every ``log_every`` steps: step, loss = NLL per response token
    over the window, lr, tokens, seconds), ``final_loss`` (the last logged loss), ``tokens`` (response tokens trained on),
    ``seconds`` and ``tokens_per_second``. Deterministic for a given seed on the CPU with one thread.
    """
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if batches is None:
        batches = warmup_batches(tokenizer, cfg.batch_size, cfg.seed, task_cfg)
        mean_tokens = mean_response_tokens(tokenizer, task_cfg, seed=cfg.seed + 1)
    elif mean_tokens is None:
        raise ValueError("train_sft with batches needs mean_tokens, their mean response tokens per example")
    norm_tokens = cfg.batch_size * mean_tokens
    history, window_nll, window_tokens, tokens, start = [], 0.0, 0, 0, time.perf_counter()
    n_steps = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = tqdm(range(n_steps), desc="warm-up SFT", disable=not progress, mininterval=2.0)
    for step in bar:
        batch = {k: v.to(device) for k, v in next(batches).items()}
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, n_tokens = sft_loss(model, batch, norm_tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        window_nll += loss.item() * norm_tokens
        window_tokens += n_tokens
        tokens += n_tokens
        if (step + 1) % cfg.log_every == 0 or step + 1 == n_steps:
            row = dict(step=step + 1, loss=window_nll / window_tokens, lr=lr_at(step, cfg), tokens=tokens)
            row["seconds"] = time.perf_counter() - start
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            window_nll, window_tokens = 0.0, 0
    model.eval()
    seconds = time.perf_counter() - start
    return dict(
        history=history,
        final_loss=history[-1]["loss"],
        tokens=tokens,
        seconds=seconds,
        tokens_per_second=tokens / seconds,
    )
