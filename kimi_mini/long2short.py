"""Long2short (report 2.4, 3.4): make a long-CoT policy answer in fewer tokens.

The report tries four ways to move a long-CoT model's skill into short answers; each is a function here:

- **Model merging**: average the weights of a long-CoT and a short-CoT policy (:func:`merge_policies`).
- **Shortest rejection sampling**: sample n = 8 responses per problem from the long policy and fine-tune it
  on the shortest correct one (:func:`shortest_correct`, :func:`fine_tune`).
- **DPO**: the shortest correct response is preferred over wrong longer ones and over correct ones at
  least 1.5 times longer (:func:`preference_pairs`, :func:`train_dpo`, :func:`dpo_loss`).
- **Long2short RL**: more RL from the long policy with the length penalty on from the first iteration and
  a sharply reduced response budget (:func:`long2short_rl_config` for :func:`kimi_mini.train.train_rl`).

Responses come in contiguous groups of ``group_size`` per problem, as :func:`kimi_mini.rollout.sample`
returns them. Introduced in {ref}`ch7-long2short`.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import RLConfig, TaskConfig
from .groups import group_chunks
from .policy import load_local_policy
from .sft import IGNORE_INDEX, collate, encode_example, sft_loss
from .tasks import Problem, answer_parts, make_problems, one_try_trace, prompt_text, verify, warmup_example

__all__ = [
    "LONG_DIR",
    "SHORT_DIR",
    "load_long_policy",
    "load_short_policy",
    "short_cot_examples",
    "one_line_examples",
    "merge_policies",
    "shortest_correct",
    "preference_pairs",
    "fine_tune",
    "response_logprobs",
    "dpo_loss",
    "train_dpo",
    "long2short_rl_config",
]


#: The shipped long-CoT policy: chapter 4's OMD run, 16 iterations from the warm-up policy.
LONG_DIR = Path(__file__).parent / "checkpoints" / "long-cot-cpu-tiny"
#: The shipped short-CoT policy: the warm-up fine-tuned on short chains, then RL at a 48-token limit.
SHORT_DIR = Path(__file__).parent / "checkpoints" / "short-cot-cpu-tiny"


def load_long_policy(device: str = "cpu", path: str | Path = LONG_DIR):
    """``(model, tokenizer)`` of the shipped long-CoT policy (or the policy directory ``path``), in eval mode:
    :func:`kimi_mini.policy.load_local_policy`."""
    return load_local_policy(path, device, regenerate="python benchmarks/long2short.py long --save")


def load_short_policy(device: str = "cpu", path: str | Path = SHORT_DIR):
    """``(model, tokenizer)`` of the shipped short-CoT policy (or the policy directory ``path``), in eval mode."""
    return load_local_policy(path, device, regenerate="python benchmarks/short_cot.py run --save")


def short_cot_examples(n: int, seed: int) -> list[tuple[str, str]]:
    """``(prompt, response)`` SFT pairs of the short-CoT regime (report 2.4): for each of ``n`` problems of
    ``make_problems(n, seed)``, one line of work, the one that hits, then the answer
    (:func:`kimi_mini.tasks.short_trace`)."""
    rng, cfg = random.Random(seed), TaskConfig(guess_fraction=0.0, search_style="short")
    return [warmup_example(problem, rng, cfg) for problem in make_problems(n, seed=seed)]


def one_line_examples(problems: list[Problem], texts: list[str]) -> list[tuple[str, str]]:
    """``(prompt, response)`` SFT pairs that compress a long policy's own correct chains to one line
    (long2short by distillation): each correct response (one per problem) rewritten as the line of its
    answer that hits, then the answer, in the short-CoT grammar (:func:`kimi_mini.tasks.one_try_trace`).
    Wrong responses are skipped."""
    if len(texts) != len(problems):
        raise ValueError(f"{len(texts)} responses for {len(problems)} problems: one response per problem")
    return [
        (prompt_text(problem), one_try_trace(problem, *answer_parts(text)))
        for problem, text in zip(problems, texts)
        if verify(problem, text)
    ]


def merge_policies(long_policy, short_policy, weight: float):
    """A new policy with weights ``weight * long + (1 - weight) * short`` (report 2.4, model merging).

    Both must have the same architecture (same parameter names and shapes); ``weight`` = 1 gives the long
    policy back, 0 the short one. Averaging only makes sense between fine-tunes of one model.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight = {weight} is invalid: it must be in [0, 1].")
    long_state, short_state = long_policy.state_dict(), short_policy.state_dict()
    if long_state.keys() != short_state.keys() or any(long_state[k].shape != short_state[k].shape for k in long_state):
        raise ValueError("the two policies have different architectures; only fine-tunes of one model can be merged")
    merged = copy.deepcopy(long_policy)
    merged.load_state_dict({k: weight * long_state[k] + (1 - weight) * short_state[k] for k in long_state})
    return merged.eval()


def _groups(problems: list[Problem], texts: list[str], lengths: list[int], group_size: int):
    """Each problem with its group's ``(length, text)`` pairs."""
    if len(texts) != len(problems) * group_size or len(lengths) != len(texts):
        raise ValueError(
            f"{len(texts)} responses and {len(lengths)} lengths for {len(problems)} problems x group_size {group_size}"
        )
    return zip(problems, group_chunks(list(zip(lengths, texts)), group_size))


def shortest_correct(
    problems: list[Problem], texts: list[str], lengths: list[int], group_size: int
) -> list[tuple[str, str]]:
    """``(prompt, response)`` of the shortest correct response of each group; groups with none are skipped."""
    out = []
    for problem, group in _groups(problems, texts, lengths, group_size):
        correct = [(size, text) for size, text in group if verify(problem, text)]
        if correct:
            out.append((prompt_text(problem), min(correct, key=lambda pair: pair[0])[1]))
    return out


def preference_pairs(
    problems: list[Problem], texts: list[str], lengths: list[int], group_size: int, ratio: float = 1.5
) -> list[tuple[str, str, str]]:
    """``(prompt, chosen, rejected)`` triples for DPO, the report's long2short recipe (2.4).

    In each group the chosen response is the shortest correct one; the rejected ones are every wrong
    response longer than it and every correct one at least ``ratio`` times as long.
    """
    out = []
    for problem, group in _groups(problems, texts, lengths, group_size):
        correct = [(size, text) for size, text in group if verify(problem, text)]
        if not correct:
            continue
        best_len, best = min(correct, key=lambda pair: pair[0])
        for size, text in group:
            right = verify(problem, text)
            if (not right and size > best_len) or (right and size >= ratio * best_len):
                out.append((prompt_text(problem), best, text))
    return out


def _batches(examples: list, batch_size: int, steps: int, seed: int):
    """``steps`` batches drawn by shuffled passes over ``examples``."""
    rng, order = random.Random(seed), []
    for _ in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        yield [examples[i] for i in order[:batch_size]]
        order = order[batch_size:]


def _optimize(policy, batches, steps: int, lr: float, loss_of, progress: bool, desc: str) -> list[float]:
    """``steps`` AdamW steps, one per batch, of ``loss_of(batch)``; the policy ends in eval mode."""
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    policy.train()
    losses = []
    for chunk in tqdm(batches, total=steps, disable=not progress, desc=desc):
        loss = loss_of(chunk)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    policy.eval()
    return losses


def fine_tune(
    policy,
    tokenizer,
    examples: list[tuple[str, str]],
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """``steps`` AdamW steps of SFT on ``(prompt, response)`` pairs (chapter 1's per-token loss); the losses."""
    if not examples:
        raise ValueError("no examples to fine-tune on")
    device = next(policy.parameters()).device
    encoded = [encode_example(tokenizer, p, r) for p, r in examples]
    mean_tokens = sum(sum(label != IGNORE_INDEX for label in labels) for _, labels in encoded) / len(encoded)

    def loss_of(chunk):
        batch = {k: v.to(device) for k, v in collate(chunk, tokenizer.pad_token_id).items()}
        return sft_loss(policy, batch, norm_tokens=len(chunk) * mean_tokens)[0]

    return _optimize(policy, _batches(encoded, batch_size, steps, seed), steps, lr, loss_of, progress, "SFT")


def response_logprobs(model, batch: dict) -> torch.Tensor:
    """(B,) log pi(response | prompt): the sum of the response tokens' log-probs (``labels`` != -100)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    labels = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t+1
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    picked = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (picked * (labels != IGNORE_INDEX)).sum(dim=1)


def dpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, Eq. 7): mean of -log sigmoid(beta * (chosen margin - rejected margin)),
    a margin being log pi(y|x) - log pi_ref(y|x); every argument (B,) sequence log-probs."""
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()


def _logprob_pairs(model, tokenizer, chunk: list[tuple[str, str, str]], device) -> tuple[torch.Tensor, torch.Tensor]:
    examples = [encode_example(tokenizer, p, y) for p, chosen, rejected in chunk for y in (chosen, rejected)]
    batch = {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id).items()}
    logprobs = response_logprobs(model, batch).view(-1, 2)  # (B, 2): chosen, rejected
    return logprobs[:, 0], logprobs[:, 1]


def train_dpo(
    policy,
    reference,
    tokenizer,
    triples: list[tuple[str, str, str]],
    steps: int,
    lr: float = 1e-5,
    beta: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """``steps`` AdamW steps of :func:`dpo_loss` on ``(prompt, chosen, rejected)`` triples, with the frozen
    ``reference`` (the policy before DPO, as in TRL's ``DPOTrainer``); returns the losses."""
    if not triples:
        raise ValueError("no preference pairs to train on")
    device = next(policy.parameters()).device
    reference.eval()

    def loss_of(chunk):
        with torch.no_grad():
            ref_chosen, ref_rejected = _logprob_pairs(reference, tokenizer, chunk, device)
        chosen, rejected = _logprob_pairs(policy, tokenizer, chunk, device)
        return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta)

    return _optimize(policy, _batches(triples, batch_size, steps, seed), steps, lr, loss_of, progress, "DPO")


def long2short_rl_config(cfg: RLConfig, max_new_tokens: int, length_penalty: float = 1.0) -> RLConfig:
    """``cfg`` for long2short RL: the length penalty on from the first iteration, at weight ``length_penalty``,
    and a (sharply reduced) response budget of ``max_new_tokens`` (report 2.4)."""
    if max_new_tokens >= cfg.max_new_tokens:
        raise ValueError(
            f"max_new_tokens = {max_new_tokens} is invalid: long2short RL cuts the budget below {cfg.max_new_tokens}."
        )
    if length_penalty <= 0:
        raise ValueError(f"length_penalty = {length_penalty} is invalid: long2short RL needs a positive weight.")
    return replace(cfg, max_new_tokens=max_new_tokens, length_penalty=length_penalty, length_penalty_warmup=0)
