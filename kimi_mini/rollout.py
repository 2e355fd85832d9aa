"""Rollouts: a batched, KV-cached sampler that returns per-token log-probs, and pass@k.

RL needs more from a sampler than text: for every sampled token, its log-probability under the policy
that sampled it (the report's pi_i in 2.3.2, the "old" log-probs of PPO), a mask of the response tokens,
and why each response stopped. :func:`sample` provides them for any ``transformers`` causal LM:

- each prompt is encoded once and its KV cache repeated ``group_size`` times (the k samples of a prompt
  are contiguous rows, as the losses of chapter 4 expect);
- each sequence stops at its own end-of-sequence token, and finished rows are dropped from the batch
  (and from the KV cache) as they accumulate, so the long tail of response lengths does not keep paying
  for finished sequences; ``model.generate`` keeps every row until the longest one ends;
- the noise for sampling is drawn for the whole batch at every step (the exponential-race form of
  sampling from a softmax), so the tokens of a row do not depend on when other rows finish.

:func:`token_logprobs` recomputes the same log-probs with one forward pass over whole sequences, as the
training step does. Checked against ``model.generate`` (benchmarks/rollout.py) and against
:func:`token_logprobs` (tests/test_rollout.py). vLLM's sampler uses the same exponential race.

Introduced in {ref}`ch2-sampler`.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .groups import per_row
from .tasks import Problem, reward

__all__ = [
    "Rollouts",
    "sample",
    "response_text",
    "token_logprobs",
    "padded_slots",
    "rollout_rewards",
    "pass_at_k",
    "image_inputs",
    "stack_images",
    "FINISH_REASONS",
]

FINISH_REASONS = ("eos", "length", "repeat")


@dataclass
class Rollouts:
    """A batch of sampled responses; row ``i`` answers prompt ``i // group_size``.

    Shapes: ``prompt_ids``/``prompt_mask`` (B, P), left-padded; ``response_ids``/``logprobs``/``mask``
    (B, T), right-padded, where ``mask`` marks response tokens (the end-of-sequence token included, since
    the policy chose it) and ``logprobs`` holds log pi(token) under the sampling distribution (0 on padding).
    """

    prompts: list[str]
    group_size: int
    prompt_ids: torch.Tensor  # (B, P)
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, T)
    logprobs: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T)
    finish_reason: list[str]
    texts: list[str]
    temperature: float
    stats: dict = field(default_factory=dict)
    loss_mask: torch.Tensor | None = None  # (B, T): tokens the loss counts; ``mask`` unless given (chapter 6)
    sampled_in: torch.Tensor | None = None  # (B, T): the iteration that sampled each token (partial rollouts)
    pixel_values: torch.Tensor | None = None  # (B, C, H, W): each row's image (zeros for a text row; chapter 11)
    has_image: torch.Tensor | None = None  # (B,) bool: rows whose prompt shows an image

    def __post_init__(self) -> None:
        if self.loss_mask is None:
            self.loss_mask = self.mask  # nothing stale: the loss counts every response token

    @property
    def lengths(self) -> torch.Tensor:
        """Response lengths in tokens, (B,)."""
        return self.mask.sum(dim=1).long()

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def select(self, rows: torch.Tensor) -> Rollouts:
        """The rows ``rows`` (whole groups, in order) as Rollouts of the same width T."""
        picked = rows.tolist()
        out = {}
        for key, value in self.__dict__.items():
            if isinstance(value, torch.Tensor):
                out[key] = value[rows.to(value.device)]
            elif key in ("finish_reason", "texts"):
                out[key] = [value[i] for i in picked]
            elif key == "prompts":
                out[key] = [value[i] for i in sorted({i // self.group_size for i in picked})]
            else:
                out[key] = value
        return Rollouts(**out)

    def image_inputs(self, rows: torch.Tensor | None = None) -> dict:
        """``{"pixel_values": ...}`` of the rows ``rows`` (all by default) that show an image, in row order, as a
        LLaVA-style model's forward pass takes them; ``{}`` when none does."""
        if self.has_image is None:
            return {}
        rows = torch.arange(len(self), device=self.has_image.device) if rows is None else rows
        return image_inputs(self.pixel_values[rows], self.has_image[rows])

    def to(self, device) -> Rollouts:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return Rollouts(**moved)


def image_inputs(pixel_values: torch.Tensor | None, has_image: torch.Tensor | None) -> dict:
    """The forward-pass keyword for images: ``pixel_values`` (n, C, H, W) of the rows with ``has_image``, or ``{}``."""
    if has_image is None or not bool(has_image.any()):
        return {}
    return {"pixel_values": pixel_values[has_image]}


def stack_images(images: list[torch.Tensor | None] | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(pixel_values, has_image)`` of one image (or None, for a text prompt) per prompt: (N, C, H, W)
    with zeros for text prompts, and (N,) bool; ``(None, None)`` when there is no image at all."""
    if images is None or all(image is None for image in images):
        return None, None
    first = next(image for image in images if image is not None)
    has_image = torch.tensor([image is not None for image in images])  # (N,)
    pixel_values = torch.stack(
        [torch.zeros_like(first) if image is None else image for image in images]
    )  # (N, C, H, W)
    return pixel_values, has_image


def input_only_tokens(policy) -> list[int]:
    """Token ids a policy reads but must never write: a vision policy's ``<image>`` placeholder (chapter 11)."""
    image_id = getattr(policy.config, "image_token_index", None)
    return [] if image_id is None else [image_id]


def _mask_input_only(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """``logits`` (..., V) with the ``ids`` set to -inf: they get probability 0 when sampling and scoring."""
    if ids:
        logits = logits.clone()
        logits[..., ids] = float("-inf")
    return logits


def _sample_token(logits: torch.Tensor, noise: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row and return ``(tokens, logprobs)``, each (A,).

    ``logits`` (A, V); ``noise`` (A, V) holds Exp(1) draws. ``argmax(p / noise)`` is a sample from ``p``
    (the exponential race); with ``temperature == 0`` it is the greedy token and its log-prob at T = 1.
    """
    logits = logits.float()
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)  # (A, V)
        tokens = logp.argmax(dim=-1)  # (A,)
    else:
        logp = torch.log_softmax(logits / temperature, dim=-1)  # (A, V): log pi_T(v | prefix)
        tokens = (logp.exp() / noise).argmax(dim=-1)  # (A,)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _cache_keyword(model) -> str:
    """transformers 5 calls the KV-cache argument ``cache``; 4.x called it ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class _Forward:
    """The policy's forward pass with a KV cache, timed: ``seconds`` is the forward-only floor that the
    benchmarks compare the sampler's wall time with (chapter 2)."""

    def __init__(self, policy):
        self.policy, self.seconds = policy, 0.0
        self.cache_kw = _cache_keyword(policy)
        self.input_only = input_only_tokens(policy)

    def __call__(self, cache, **inputs) -> torch.Tensor:
        """Logits of the last position, (A, V)."""
        cuda = inputs["input_ids"].is_cuda
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = self.policy(**inputs, use_cache=True, **{self.cache_kw: cache})
        if cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return _mask_input_only(out.logits[:, -1], self.input_only)


@dataclass
class _Decoding:
    """The sampler's state. Rows ``0..B-1`` are all responses; the ``A`` active rows are those still in the
    batch and its KV cache (``rows`` maps them to response rows)."""

    response_ids: torch.Tensor  # (B, T_max), pad-filled
    logprobs: torch.Tensor  # (B, T_max)
    lengths: torch.Tensor  # (B,)
    budget: torch.Tensor  # (B,): each row's max_new_tokens
    finished: torch.Tensor  # (B,) bool
    hit_eos: torch.Tensor  # (B,) bool: finished by end-of-sequence
    rows: torch.Tensor  # (A,): response row of each active row
    attention: torch.Tensor  # (A, P + t): attention mask of prompt and response so far
    next_position: torch.Tensor  # (A,): position id of the next token
    steps: int = 0
    row_steps: int = 0  # token slots computed; ``model.generate`` computes B * steps

    @classmethod
    def start(cls, prompt_mask: torch.Tensor, budgets: list[int], pad: int) -> _Decoding:
        B, device, T_max = prompt_mask.shape[0], prompt_mask.device, max(budgets)
        no = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
        return cls(
            response_ids=torch.full((B, T_max), pad, dtype=torch.long, device=device),
            logprobs=torch.zeros((B, T_max), dtype=torch.float32, device=device),
            lengths=torch.zeros(B, dtype=torch.long, device=device),
            budget=torch.tensor(budgets, device=device).expand(B),
            finished=no,
            hit_eos=no.clone(),
            rows=torch.arange(B, device=device),
            attention=prompt_mask.clone(),
            next_position=prompt_mask.sum(-1),
        )


def _check_sample_args(prompts, group_size, max_new_tokens, temperature, prefixes) -> list[int]:
    """The per-row budgets (one, or one per row); ValueError naming the argument if any is invalid."""
    budgets = [max_new_tokens] if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if group_size < 1 or min(budgets, default=0) < 1 or temperature < 0:
        raise ValueError(
            f"group_size = {group_size}, max_new_tokens = {max_new_tokens} must be >= 1 and temperature = {temperature} >= 0"
        )
    if prefixes is not None and (group_size != 1 or len(prefixes) != len(prompts)):
        raise ValueError("prefixes needs group_size = 1 and one prefix (a list of token ids) per prompt")
    if len(budgets) > 1 and len(budgets) != len(prompts) * group_size:
        raise ValueError(f"max_new_tokens has {len(budgets)} budgets for {len(prompts) * group_size} rows")
    return budgets


def _prefill(forward: _Forward, enc, group_size: int, images: dict) -> tuple[torch.Tensor, DynamicCache]:
    """Encode each distinct prompt once (with its image, if any), then repeat its KV cache for its k samples:
    logits (B, V), cache."""
    cache = DynamicCache()
    position_ids = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # (N, P)
    logits = forward(
        cache, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], position_ids=position_ids, **images
    )
    cache.batch_repeat_interleave(group_size)
    return logits.repeat_interleave(group_size, dim=0), cache  # (B, V)


def _decode_step(state: _Decoding, logits, noise, t: int, temperature: float, eos: int) -> torch.Tensor:
    """Sample token ``t`` of every active row and record it for the rows not yet finished: tokens (A,)."""
    tokens, token_logp = _sample_token(logits, noise[state.rows], temperature)  # (A,), (A,)
    active = ~state.finished[state.rows]  # (A,): rows kept in the batch after they finished record nothing
    live, new = state.rows[active], tokens[active]
    state.response_ids[live, t] = new
    state.logprobs[live, t] = token_logp[active]
    state.lengths[live] += 1
    state.hit_eos[live[new == eos]] = True
    state.finished[live] = state.hit_eos[live] | (state.lengths[live] >= state.budget[live])
    state.steps += 1
    state.row_steps += len(state.rows)
    return tokens


def _drop_finished(state: _Decoding, cache: DynamicCache, tokens: torch.Tensor) -> torch.Tensor:
    """Remove finished rows from the batch and the KV cache; returns the active rows' last tokens (A',)."""
    keep = (~state.finished[state.rows]).nonzero().squeeze(-1)  # (A',)
    cache.batch_select_indices(keep)
    state.rows, state.attention, state.next_position = (
        state.rows[keep],
        state.attention[keep],
        state.next_position[keep],
    )
    return tokens[keep]


def _next_logits(forward: _Forward, state: _Decoding, tokens: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """Feed the last sampled token of every active row: logits for the next one, (A, V)."""
    state.attention = torch.cat([state.attention, state.attention.new_ones((len(state.rows), 1))], dim=1)  # (A, P+t+1)
    logits = forward(
        cache,
        input_ids=tokens.unsqueeze(-1),
        attention_mask=state.attention,
        position_ids=state.next_position.unsqueeze(-1),
    )
    state.next_position = state.next_position + 1
    return logits


@torch.no_grad()
def sample(
    policy,
    tokenizer,
    prompts: list[str],
    group_size: int = 1,
    max_new_tokens: int = 480,
    temperature: float = 1.0,
    seed: int = 0,
    compact_every: float = 0.125,
    prefixes: list[list[int]] | None = None,
    images: list[torch.Tensor | None] | None = None,
) -> Rollouts:
    """Sample ``group_size`` responses to each prompt, with per-token log-probs.

    ``max_new_tokens`` is one budget for every row or a list with one per row (a row that reaches its
    budget stops with finish reason ``"length"``). ``prefixes`` continues responses instead of starting
    them (partial rollouts, chapter 6): row ``i`` re-encodes ``prompts[i]`` followed by the token ids
    ``prefixes[i]`` with the current weights and samples what comes next; it needs ``group_size == 1``,
    and the result's ``prompt_ids`` then hold prompt and prefix, its responses only the new tokens.
    ``compact_every``: drop finished rows from the batch once they make up this share of it (dropping
    costs a copy of the KV cache, so it is batched). The result's ``stats`` holds ``seconds``,
    ``forward_seconds`` (the model's forward passes alone), ``steps``, ``tokens`` (response tokens) and
    ``row_steps`` (token slots computed: ``model.generate`` computes ``B * steps``).

    ``images``: one image tensor (C, H, W) or None per prompt, for a vision policy (chapter 11): each image
    prompt's ``<image>`` tokens are replaced by its image's features in the first forward pass, and the
    result keeps every row's image for :func:`token_logprobs`.
    """
    budgets = _check_sample_args(prompts, group_size, max_new_tokens, temperature, prefixes)
    if images is not None and len(images) != len(prompts):
        raise ValueError(f"images has {len(images)} entries for {len(prompts)} prompts: give one (or None) per prompt")
    device = next(policy.parameters()).device
    start, forward = time.perf_counter(), _Forward(policy)
    if prefixes is None:
        enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)  # (N, P), left-padded
    else:
        enc = _encode_with_prefixes(tokenizer, prompts, prefixes).to(device)  # (N, P), left-padded
    prompt_ids = enc["input_ids"].repeat_interleave(group_size, dim=0)  # (B, P): k contiguous rows per prompt
    prompt_mask = enc["attention_mask"].repeat_interleave(group_size, dim=0)  # (B, P)
    pixel_values, has_image = stack_images(images)  # (N, C, H, W), (N,) or None
    if has_image is not None:
        pixel_values, has_image = pixel_values.to(device), has_image.to(device)
    logits, cache = _prefill(forward, enc, group_size, image_inputs(pixel_values, has_image))  # (B, V)
    state = _Decoding.start(prompt_mask, budgets, tokenizer.pad_token_id)
    generator = torch.Generator(device=device).manual_seed(seed)
    for t in range(max(budgets)):
        # Noise for all B rows at every step, so a row's tokens do not depend on when others finish.
        noise = torch.empty((len(prompt_ids), logits.shape[-1]), device=device).exponential_(generator=generator)
        tokens = _decode_step(state, logits, noise, t, temperature, tokenizer.eos_token_id)  # (A,)
        if bool(state.finished.all()) or t + 1 == max(budgets):
            break
        if state.finished[state.rows].float().mean().item() >= compact_every:
            tokens = _drop_finished(state, cache, tokens)  # (A',)
        logits = _next_logits(forward, state, tokens, cache)  # (A, V)
    stats = dict(seconds=0.0, forward_seconds=forward.seconds, steps=state.steps, row_steps=state.row_steps)
    rollouts = _as_rollouts(state, tokenizer, list(prompts), group_size, prompt_ids, prompt_mask, temperature, stats)
    if has_image is not None:  # each row keeps its prompt's image
        rollouts.pixel_values = pixel_values.repeat_interleave(group_size, dim=0)  # (B, C, H, W)
        rollouts.has_image = has_image.repeat_interleave(group_size, dim=0)  # (B,)
    stats["seconds"] = time.perf_counter() - start
    return rollouts


def _as_rollouts(state: _Decoding, tokenizer, prompts, group_size, prompt_ids, prompt_mask, temperature, stats):
    """Trim the state's buffers to the longest response and decode the texts."""
    T = int(state.lengths.max())
    mask = torch.arange(T, device=state.lengths.device).unsqueeze(0) < state.lengths.unsqueeze(1)  # (B, T)
    response_ids, logprobs = state.response_ids[:, :T], state.logprobs[:, :T] * mask  # (B, T)
    reasons = ["eos" if f else "length" for f in state.hit_eos.tolist()]
    texts = [
        response_text(tokenizer, ids[:n], r)
        for ids, n, r in zip(response_ids.tolist(), state.lengths.tolist(), reasons)
    ]
    stats["tokens"] = int(state.lengths.sum())
    return Rollouts(
        prompts=prompts,
        group_size=group_size,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        logprobs=logprobs,
        mask=mask,
        finish_reason=reasons,
        texts=texts,
        temperature=temperature,
        stats=stats,
    )


def _encode_with_prefixes(tokenizer, prompts: list[str], prefixes: list[list[int]]):
    """Prompt ids followed by prefix ids, left-padded by the tokenizer: ``input_ids``, ``attention_mask`` (N, P)."""
    rows = [ids + list(prefix) for ids, prefix in zip(tokenizer(prompts)["input_ids"], prefixes)]
    return tokenizer.pad({"input_ids": rows}, return_tensors="pt")


def response_text(tokenizer, ids: list[int], finish_reason: str) -> str:
    """The text of a response's token ids, without its end-of-sequence token."""
    return tokenizer.decode(ids[: len(ids) - (finish_reason == "eos")], skip_special_tokens=True)


def _bucket_logprobs(policy, rollouts: Rollouts, rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probs of the responses in ``rows``, trimmed to their own longest response: (len(rows), T_rows)."""
    T = int(rollouts.lengths[rows].max())
    response_ids, mask = rollouts.response_ids[rows, :T], rollouts.mask[rows, :T]  # (b, T)
    input_ids = torch.cat([rollouts.prompt_ids[rows], response_ids], dim=1)  # (b, P + T)
    attention = torch.cat([rollouts.prompt_mask[rows], mask.long()], dim=1)  # (b, P + T)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)  # (b, P + T)
    images = rollouts.image_inputs(rows)  # {} for text, else the rows' images
    logits = policy(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, **images).logits
    # logits: (b, P + T, V)
    P = rollouts.prompt_ids.shape[1]
    logits = logits[:, P - 1 : -1].float()  # (b, T, V): the predictions of the response tokens
    logits = _mask_input_only(logits, input_only_tokens(policy))
    logp = torch.log_softmax(logits / (temperature or 1.0), dim=-1)  # (b, T, V)
    return logp.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1) * mask  # (b, T)


def _length_buckets(rollouts: Rollouts, n: int) -> tuple[torch.Tensor, ...]:
    """Row indices split into ``n`` groups of similar length, shortest first."""
    return torch.argsort(rollouts.lengths, stable=True).chunk(max(1, n))


def token_logprobs(
    policy, rollouts: Rollouts, temperature: float | None = None, length_buckets: int = 1
) -> torch.Tensor:
    """Per-token log-probs of the rollouts' responses under ``policy``, (B, T), 0 on padding.

    One forward pass over ``prompt + response``; position ``P - 1 + t`` predicts response token ``t``.
    Uses the rollouts' sampling temperature unless ``temperature`` is given (0 counts as 1). Gradients
    flow when called outside ``torch.no_grad()``: this is the log pi_theta of the training step.

    ``length_buckets > 1`` sorts the rows by length and runs that many forward passes, each padded only
    to its own longest response, then puts the rows back in place: the same (B, T) result (and gradient)
    for a fraction of the padded compute when lengths have a long tail (chapter 2 measures it).
    """
    temperature = rollouts.temperature if temperature is None else temperature
    if length_buckets <= 1:
        rows = torch.arange(len(rollouts), device=rollouts.mask.device)
        out = _bucket_logprobs(policy, rollouts, rows, temperature)  # (B, T_rows)
        return torch.nn.functional.pad(out, (0, rollouts.mask.shape[1] - out.shape[1]))  # (B, T)
    out = torch.zeros(rollouts.mask.shape, dtype=torch.float32, device=rollouts.mask.device)  # (B, T)
    for rows in _length_buckets(rollouts, length_buckets):
        part = _bucket_logprobs(policy, rollouts, rows, temperature)  # (b, T_rows)
        out = out.index_put((rows.unsqueeze(-1), torch.arange(part.shape[1], device=out.device)), part)
    return out


def padded_slots(rollouts: Rollouts, length_buckets: int = 1) -> int:
    """Token slots (rows x padded length, prompts included) that :func:`token_logprobs` computes."""
    P = rollouts.prompt_ids.shape[1]
    return sum(
        len(rows) * (P + int(rollouts.lengths[rows].max())) for rows in _length_buckets(rollouts, length_buckets)
    )


def rollout_rewards(problems: list[Problem], rollouts: Rollouts) -> torch.Tensor:
    """The verifier's reward of every response, (B,); ``problems[i]`` is the problem of prompt ``i``."""
    rows = per_row(problems, rollouts.group_size)  # (B,): the problem of each response
    return torch.tensor([reward(problem, text) for problem, text in zip(rows, rollouts.texts)], dtype=torch.float32)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): ``1 - C(n - c, k) / C(n, k)`` for ``c`` correct of ``n`` samples.

    The probability that at least one of ``k`` samples drawn without replacement from the ``n`` is
    correct, computed as a stable product.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n = {n}, c = {c}, k = {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
