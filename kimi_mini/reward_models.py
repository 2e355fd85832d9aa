"""Rewards without an exact checker: a classic and a chain-of-thought reward model, and prompt curation.

Kimi k1.5 does not check every answer with a program. For math it trained two reward models that judge
whether a response's answer matches the reference (report 2.3.5): a *classic* one, a value head that reads
the question, the reference and the response and outputs one number, and a *chain-of-thought* one that
first writes its reasoning and then a verdict. In the report's manual spot checks the classic model was
right 84.4% of the time, the chain-of-thought one 98.5%, and RL used the latter. Its prompt set is also
curated (report 2.1): each problem's difficulty is a warm-up model's pass rate over 10 samples at a high
temperature, used to balance difficulty, and (for general question answering) problems whose answers
are easy to guess are dropped.

In miniature, for Countdown-mini:

- :func:`build_classic_rm`: a ``transformers`` ``LlamaForSequenceClassification`` (one output, the
  policy's tokenizer, the warm-up policy's body as its start), trained by :func:`train_classic_rm` with
  binary cross-entropy on (problem + response, verifier label) pairs; its reward is the probability
  ``sigmoid(logit)`` (:func:`classic_rewards`);
- :func:`build_cot_rm`: a ``LlamaForCausalLM`` started from the warm-up policy, fine-tuned by
  :func:`train_cot_rm` to write :func:`check_text` after the response, a step-by-step recomputation of
  the answer line in the policy's own trace format followed by a verdict (``!`` right, ``.`` wrong):
  ``>> 4*3=12: 12+5=17 vs 17, 345 vs 345 => !``; judged by greedy decoding (:func:`cot_rewards`). Trained
  on the responses as they are, its verdict follows the response's style instead of its own check; part
  of its training responses get a :func:`counterfactual` answer line so that only the check predicts it;
- :func:`reward_function`: either model as a reward function with Hugging Face TRL's interface
  ``f(prompts, completions, numbers, target, **kwargs) -> list[float]``, which
  :func:`kimi_mini.train.train_rl` also accepts as ``reward_fn`` in place of the verifier;
- :func:`pass_counts` and :func:`curate`: the report's difficulty estimate (successes in 10 samples) and
  the curated pool (drop the guessable problems, :func:`kimi_mini.sampling.guessable`, and, this book's
  addition, those solved 10 times out of 10).

Both judges read the problem and the last :data:`JUDGE_TAIL` characters of the response (the answer is
at its end; the tiny models' context is 512 tokens). Models save and load with ``save_pretrained`` /
``from_pretrained`` (safetensors, :func:`save_reward_model`, :func:`load_reward_model`).

Introduced in {ref}`ch10-title`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification

from .groups import by_group
from .policy import check_finite, load_policy, save_policy
from .rollout import rollout_rewards, sample
from .rundir import check_checksums
from .sampling import ProblemPool
from .sft import collate, encode_example, sft_loss
from .tasks import (
    ANSWER_PREFIX,
    Problem,
    all_expressions,
    answer_line,
    answer_parts,
    apply_op,
    make_problems,
    policy_prompts,
    prompt_text,
    verify,
)

__all__ = [
    "JUDGE_TAIL",
    "CHECK_PREFIX",
    "judge_input",
    "sample_responses",
    "build_classic_rm",
    "classic_logits",
    "classic_rewards",
    "train_classic_rm",
    "check_text",
    "build_cot_rm",
    "counterfactual",
    "train_cot_rm",
    "cot_judgements",
    "cot_rewards",
    "read_verdict",
    "reward_function",
    "save_reward_model",
    "load_reward_model",
    "pass_counts",
    "curate",
    "curated_pool",
]

#: Characters of the response a judge reads (its end, where the answer is).
JUDGE_TAIL = 160
#: What follows the response in the chain-of-thought judge's input; the judge writes the check after it.
CHECK_PREFIX = "\n>> "
SHIPPED = Path(__file__).resolve().parent / "checkpoints"


def judge_input(problem: Problem, response: str, tail: int = JUDGE_TAIL) -> str:
    """What a judge reads: the problem's prompt (numbers and target: the reference) and the response's
    last ``tail`` characters."""
    return prompt_text(problem) + response[-tail:]


def sample_responses(policy, tokenizer, n: int, seed: int, max_new_tokens: int = 480, temperature: float = 1.0):
    """``(problems, texts, labels)``: one response of ``policy`` to each of ``n`` problems drawn with
    ``seed`` (sampling noise from ``seed`` too), and the verifier's 0/1 label of each."""
    problems = make_problems(n, seed=seed)
    rollouts = sample(policy, tokenizer, policy_prompts(problems, tokenizer), 1, max_new_tokens, temperature, seed=seed)
    return problems, rollouts.texts, [verify(p, t) for p, t in zip(problems, rollouts.texts)]


# ----------------------------------------------------------------------------------------- classic RM


def build_classic_rm(policy: LlamaForCausalLM) -> LlamaForSequenceClassification:
    """A one-output ``LlamaForSequenceClassification`` with ``policy``'s config and transformer body (the
    report's reward models, like InstructGPT's, start from a trained language model); the value head
    (``score``) starts at zero, so every response first scores 0.5."""
    config = {k: v for k, v in policy.config.to_dict().items() if k not in ("id2label", "label2id")}
    config.update(num_labels=1, architectures=["LlamaForSequenceClassification"])
    rm = LlamaForSequenceClassification(type(policy.config).from_dict(config))
    rm.model.load_state_dict(policy.model.state_dict())
    torch.nn.init.zeros_(rm.score.weight)
    return rm


def _encode_right(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """``<bos> text <eos>``, right-padded: ``input_ids`` and ``attention_mask`` (B, T). The classifier reads
    the last non-padding position, the ``<eos>``."""
    rows = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return dict(input_ids=ids, attention_mask=mask)


def classic_logits(rm, tokenizer, problems: list[Problem], texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """(N,) the classic reward model's logits (no gradients), ``batch_size`` responses at a time."""
    device, out = next(rm.parameters()).device, []
    rm.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            inputs = [judge_input(p, t) for p, t in zip(problems[start : start + batch_size], texts[start:])]
            enc = {k: v.to(device) for k, v in _encode_right(tokenizer, inputs).items()}
            out.append(rm(**enc).logits[:, 0].float().cpu())  # (b,)
    return torch.cat(out) if out else torch.zeros(0)


def classic_rewards(rm, tokenizer, problems: list[Problem], texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """(N,) the classic reward: the model's probability that the response is right, sigmoid(logit)."""
    return torch.sigmoid(classic_logits(rm, tokenizer, problems, texts, batch_size))


def train_classic_rm(
    rm,
    tokenizer,
    problems: list[Problem],
    texts: list[str],
    labels: list[int],
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
) -> list[float]:
    """Fit the value head and body with binary cross-entropy against the verifier's labels, AdamW, shuffled
    batches (seeded). Returns the mean loss of each epoch."""
    rng, device = random.Random(seed), next(rm.parameters()).device
    optimizer = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    history = []
    for _ in range(epochs):
        order, total = list(range(len(texts))), 0.0
        rng.shuffle(order)
        rm.train()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            enc = _encode_right(tokenizer, [judge_input(problems[i], texts[i]) for i in rows])
            logits = rm(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0]  # (b,)
            target = torch.tensor([float(labels[i]) for i in rows], device=device)  # (b,)
            loss = F.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        history.append(total / len(order))
    rm.eval()
    return history


# ---------------------------------------------------------------------------------- chain-of-thought RM


def check_text(problem: Problem, response: str) -> str:
    """The chain-of-thought judge's target: the answer line recomputed step by step in the warm-up trace's
    format, the numbers it uses against the problem's (sorted digits), then ``=> !`` (right) or ``=> .``
    (wrong). A response without a well-formed answer line gets ``=> .`` at once. Its verdict is always
    the verifier's (tested)."""
    parts = answer_parts(response)
    if parts is None:
        return "=> ."
    x, op1, y, op2, z = parts
    p = apply_op(x, op1, y)
    value = apply_op(p, op2, z)
    used, need = "".join(sorted(f"{x}{y}{z}")), "".join(sorted("".join(map(str, problem.numbers))))
    ok = value == problem.target and used == need
    return f"{x}{op1}{y}={p}: {p}{op2}{z}={value} vs {problem.target}, {used} vs {need} => {'!' if ok else '.'}"


def read_verdict(judgement: str) -> int:
    """1 if the judge's text ends its check with ``=> !``, else 0 (no verdict counts as wrong)."""
    head, sep, verdict = judgement.rpartition("=> ")
    return int(bool(sep) and verdict.strip() == "!")


def build_cot_rm(policy: LlamaForCausalLM) -> LlamaForCausalLM:
    """A copy of ``policy`` (it already writes ``4*3=12: 12+5=17 vs 17``) to fine-tune as the judge."""
    judge = LlamaForCausalLM(policy.config)
    judge.load_state_dict(policy.state_dict())
    return judge.eval()


def counterfactual(problem: Problem, response: str, rng: random.Random) -> str:
    """``response`` with its last answer line replaced: half the time by a right expression, else by a
    wrong one (a random expression of the problem's numbers, or a right one with a digit changed).
    Responses without an answer line are returned unchanged."""
    lines = response.split("\n")
    answers = [i for i, line in enumerate(lines) if answer_line(line) is not None]
    if not answers:
        return response
    right = [e for e, value in all_expressions(problem.numbers) if value == problem.target]
    if rng.random() < 0.5:
        expression = rng.choice(right)
    elif rng.random() < 0.5:
        expression = rng.choice(all_expressions(problem.numbers))[0]
    else:
        expression = rng.choice(right)
        digit = rng.choice([i for i, c in enumerate(expression) if c.isdigit()])
        expression = expression[:digit] + str(rng.randint(1, 9)) + expression[digit + 1 :]
    lines[answers[-1]] = ANSWER_PREFIX + expression
    return "\n".join(lines)


def train_cot_rm(
    judge,
    tokenizer,
    problems: list[Problem],
    texts: list[str],
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    counterfactual_share: float = 0.0,
) -> list[float]:
    """Supervised fine-tuning on ``judge_input + CHECK_PREFIX -> check_text`` (next-token loss on the check
    only, :func:`kimi_mini.sft.sft_loss`), AdamW, shuffled batches. Returns each epoch's mean loss per
    check token. No verifier labels are needed: the check is computed from the response itself.

    ``counterfactual_share``: this share of the responses (drawn with ``seed``) get a
    :func:`counterfactual` answer line, so that the response's style (a search that marked a hit, a bare
    guess) no longer predicts the verdict and the verdict has to follow the check ({ref}`ch10-cot`)."""
    rng, device = random.Random(seed), next(judge.parameters()).device
    texts = [counterfactual(p, t, rng) if rng.random() < counterfactual_share else t for p, t in zip(problems, texts)]
    examples = [
        encode_example(tokenizer, judge_input(p, t) + CHECK_PREFIX, check_text(p, t)) for p, t in zip(problems, texts)
    ]
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.0)
    history = []
    for _ in range(epochs):
        order, total, tokens = list(range(len(examples))), 0.0, 0
        rng.shuffle(order)
        judge.train()
        for start in range(0, len(order), batch_size):
            batch = collate([examples[i] for i in order[start : start + batch_size]], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, n = sft_loss(judge, batch, norm_tokens=1.0)  # summed NLL of the check tokens
            optimizer.zero_grad(set_to_none=True)
            (loss / n).backward()
            optimizer.step()
            total, tokens = total + loss.item(), tokens + n
        history.append(total / tokens)
    judge.eval()
    return history


def cot_judgements(judge, tokenizer, problems: list[Problem], texts: list[str], max_new_tokens: int = 48) -> list[str]:
    """The judge's greedy check of each response (its text after :data:`CHECK_PREFIX`)."""
    prompts = [judge_input(p, t) + CHECK_PREFIX for p, t in zip(problems, texts)]
    return sample(judge, tokenizer, prompts, 1, max_new_tokens, temperature=0.0).texts


def cot_rewards(judge, tokenizer, problems: list[Problem], texts: list[str]) -> torch.Tensor:
    """(N,) the chain-of-thought reward: 1.0 if the judge's greedy check ends in ``=> !``, else 0.0."""
    judgements = cot_judgements(judge, tokenizer, problems, texts)
    return torch.tensor([float(read_verdict(j)) for j in judgements])


# ------------------------------------------------------------------------------------ reward functions


def _completion_text(completion) -> str:
    """TRL passes strings, or for chat datasets a list with one message dict."""
    return completion if isinstance(completion, str) else completion[0]["content"]


def reward_function(model, tokenizer):
    """``model`` (a classic or a chain-of-thought reward model) as a reward function
    ``f(prompts, completions, numbers, target, **kwargs) -> list[float]``: the interface of TRL's
    ``GRPOTrainer`` (columns of :func:`kimi_mini.trl.countdown_dataset`) and of ``train_rl(reward_fn=...)``.
    The prompts are not read: the judge sees the problem through ``numbers`` and ``target``."""
    classic = isinstance(model, LlamaForSequenceClassification)
    judge = classic_rewards if classic else cot_rewards

    def rm_reward(prompts, completions, numbers, target, **kwargs) -> list[float]:
        problems = [Problem(tuple(int(v) for v in n), int(t)) for n, t in zip(numbers, target)]
        return judge(model, tokenizer, problems, [_completion_text(c) for c in completions]).tolist()

    rm_reward.__name__ = "classic_rm_reward" if classic else "cot_rm_reward"  # TRL logs rewards/<__name__>
    return rm_reward


def save_reward_model(model, tokenizer, path: str | Path) -> Path:
    """Save a reward model and its tokenizer (safetensors, with SHA-256 checksums) to ``path``."""
    return save_policy(model, tokenizer, path)


def load_reward_model(path: str | Path, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` from ``path`` (a directory by :func:`save_reward_model`, or ``"classic"`` /
    ``"cot"`` for the shipped ``reward-<kind>-cpu-tiny``): a classifier or a causal LM, from its config.
    Checksums and finiteness are checked as for a policy (:func:`kimi_mini.policy.load_policy`)."""
    if str(path) in ("classic", "cot"):
        path = SHIPPED / f"reward-{path}-cpu-tiny"
    config = json.loads((Path(path) / "config.json").read_text())
    if "LlamaForSequenceClassification" not in config.get("architectures", []):
        model, tokenizer = load_policy(path, device)
        return model.eval(), tokenizer
    check_checksums(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = LlamaForSequenceClassification.from_pretrained(path, use_safetensors=True)
    check_finite(model, f"the weights of {path} are damaged")
    return model.to(device).eval(), tokenizer


# ---------------------------------------------------------------------------------------------- curation


def pass_counts(policy, tokenizer, problems: list[Problem], samples: int = 10, temperature: float = 1.0, seed: int = 0):
    """(N,) how many of ``samples`` responses per problem (at ``temperature``) the verifier accepts: the
    report's difficulty estimate (2.1: an SFT model's pass rate over 10 samples at high temperature)."""
    prompts = policy_prompts(problems, tokenizer)
    rollouts = sample(policy, tokenizer, prompts, samples, 480, temperature, seed=seed)
    correct = rollout_rewards(problems, rollouts)  # (N * samples,) the verifier's 0/1
    return by_group(correct, samples).sum(dim=1).long()  # (N,)


def curate(counts: torch.Tensor, guessed: list[bool], samples: int = 10) -> list[bool]:
    """Which problems a curated pool keeps: not solved every time (``counts < samples``) and not guessable."""
    return [int(c) < samples and not g for c, g in zip(counts.tolist(), guessed)]


def curated_pool(pool: ProblemPool, keep: list[bool]) -> ProblemPool:
    """A copy of ``pool`` with only ``keep``'s problems active (success counts reset)."""
    return ProblemPool(list(pool.problems), active=list(keep))
