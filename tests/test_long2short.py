import math

import pytest
import torch

from kimi_mini.config import RLConfig
from kimi_mini.long2short import (
    dpo_loss,
    fine_tune,
    long2short_rl_config,
    merge_policies,
    one_line_examples,
    preference_pairs,
    response_logprobs,
    short_cot_examples,
    shortest_correct,
    train_dpo,
)
from kimi_mini.policy import build_policy
from kimi_mini.rollout import sample
from kimi_mini.sft import collate, encode_example
from kimi_mini.tasks import ANSWER_PREFIX, Problem, make_problems, prompt_text, verify
from kimi_mini.warmup import load_warmup_policy

PROBLEM = Problem((4, 3, 5), 17)  # (4*3)+5
RIGHT_SHORT = "answer (4*3)+5"
RIGHT_LONG = "4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5"  # 37 characters, 2.6x the short one
WRONG_SHORT = "answer (4+3)+5"
WRONG_LONG = "4+3=7: 7+5=12 vs 17, 7-5=2 vs 17.\nanswer (4+3)*5"


def test_merging_interpolates_the_weights(tokenizer, tiny_config):
    torch.manual_seed(0)
    a = build_policy(tiny_config, tokenizer)
    torch.manual_seed(1)
    b = build_policy(tiny_config, tokenizer)
    for weight in (0.0, 0.25, 1.0):
        merged = merge_policies(a, b, weight).state_dict()
        for key, value in a.state_dict().items():
            assert torch.allclose(merged[key], weight * value + (1 - weight) * b.state_dict()[key])
    assert merge_policies(a, b, 0.5) is not a  # a new policy; the inputs are untouched
    other = build_policy(type(tiny_config)(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), tokenizer)
    with pytest.raises(ValueError, match="different architectures"):
        merge_policies(a, other, 0.5)
    with pytest.raises(ValueError, match="weight = 1.5"):
        merge_policies(a, b, 1.5)


def test_shortest_correct_and_the_reports_preference_pairs():
    texts = [WRONG_SHORT, RIGHT_LONG, RIGHT_SHORT, WRONG_LONG]
    lengths = [len(t) + 1 for t in texts]  # characters are this tokenizer's tokens, plus <eos>
    other = Problem((1, 1, 1), 3)
    nothing_right = ["answer (1+1)*1"] * 4
    problems = [PROBLEM, other]
    all_texts, all_lengths = texts + nothing_right, lengths + [15] * 4
    assert shortest_correct(problems, all_texts, all_lengths, 4) == [(prompt_text(PROBLEM), RIGHT_SHORT)]
    pairs = preference_pairs(problems, all_texts, all_lengths, 4)
    # wrong and as short as the chosen one: not a negative; correct and 2.6x longer: a negative
    assert pairs == [(prompt_text(PROBLEM), RIGHT_SHORT, RIGHT_LONG), (prompt_text(PROBLEM), RIGHT_SHORT, WRONG_LONG)]
    assert preference_pairs(problems, all_texts, all_lengths, 4, ratio=3.0) == [pairs[1]]
    with pytest.raises(ValueError, match="group_size 3"):
        shortest_correct(problems, all_texts, all_lengths, 3)


def test_response_logprobs_equal_the_samplers():
    policy, tokenizer = load_warmup_policy()
    rollouts = sample(policy, tokenizer, [prompt_text(PROBLEM)] * 2, 3, max_new_tokens=300, seed=0)
    assert rollouts.finish_reason == ["eos"] * 6
    examples = [encode_example(tokenizer, prompt_text(PROBLEM), text) for text in rollouts.texts]
    with torch.no_grad():
        got = response_logprobs(policy, collate(examples, tokenizer.pad_token_id))  # (6,)
    assert torch.allclose(got, rollouts.logprobs.sum(dim=1), atol=1e-3)


def test_dpo_loss_is_log2_at_the_reference_and_prefers_the_chosen():
    logp = torch.tensor([-3.0, -5.0])
    assert dpo_loss(logp, logp, logp, logp, beta=0.1).item() == pytest.approx(math.log(2))
    chosen = torch.tensor([-3.0, -5.0], requires_grad=True)
    loss = dpo_loss(chosen, torch.tensor([-4.0, -4.0]), logp, torch.tensor([-4.0, -4.0]), beta=0.5)
    loss.backward()
    assert (chosen.grad < 0).all()  # descending raises the chosen responses' log-probs


def test_fine_tune_and_dpo_move_the_policy_the_right_way(tokenizer, tiny_config):
    torch.manual_seed(0)
    policy = build_policy(tiny_config, tokenizer)
    losses = fine_tune(policy, tokenizer, [(prompt_text(PROBLEM), RIGHT_SHORT)], steps=30, lr=3e-3, batch_size=4)
    assert losses[-1] < 0.5 * losses[0]
    reference = merge_policies(policy, policy, 1.0)  # a frozen copy
    triples = [(prompt_text(PROBLEM), RIGHT_SHORT, RIGHT_LONG)]
    batch = collate([encode_example(tokenizer, prompt_text(PROBLEM), y) for y in (RIGHT_SHORT, RIGHT_LONG)], 0)

    def margin(model):
        with torch.no_grad():
            chosen, rejected = response_logprobs(model, batch)
        return float(chosen - rejected)

    before = margin(policy)
    dpo = train_dpo(policy, reference, tokenizer, triples, steps=20, lr=1e-3, beta=0.1, batch_size=2)
    assert dpo[0] == pytest.approx(math.log(2), abs=1e-5) and dpo[-1] < dpo[0]
    assert margin(policy) > before + 1.0
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(policy, reference, tokenizer, [], steps=1)


def test_long2short_rl_config():
    cfg = long2short_rl_config(RLConfig(length_penalty_warmup=5), max_new_tokens=96, length_penalty=0.5)
    assert (cfg.max_new_tokens, cfg.length_penalty, cfg.length_penalty_warmup) == (96, 0.5, 0)
    with pytest.raises(ValueError, match="max_new_tokens = 480"):
        long2short_rl_config(RLConfig(), max_new_tokens=480)
    with pytest.raises(ValueError, match="length_penalty = 0"):
        long2short_rl_config(RLConfig(), max_new_tokens=96, length_penalty=0)


def test_short_cot_examples_are_one_line_that_hits():
    examples = short_cot_examples(200, seed=7)
    assert examples == short_cot_examples(200, seed=7)  # the same data for the same seed
    problems = make_problems(200, seed=7)
    for problem, (prompt, response) in zip(problems, examples):
        work, answer = response.split("\n")
        assert prompt == prompt_text(problem) and verify(problem, response)
        assert work.endswith(f"vs {problem.target}!") and ", " not in work  # one try, and it hits
        assert answer.startswith(ANSWER_PREFIX)


def test_shipped_short_cot_policy_is_a_fine_tune_of_the_warmup_that_answers_short():
    """The short-CoT policy of chapter 7: its recorded hash and recipe, and short, mostly right answers."""
    import json

    from kimi_mini.long2short import SHORT_DIR, load_short_policy
    from kimi_mini.train import heldout_outcomes
    from kimi_mini.warmup import sha256_of

    metrics = json.loads((SHORT_DIR / "metrics.json").read_text())
    assert sha256_of(SHORT_DIR / "model.safetensors") == metrics["sha256"]
    assert metrics["recipe"]["rl"]["max_new_tokens"] == 48
    policy, tokenizer = load_short_policy()
    warm, _ = load_warmup_policy()
    assert policy.state_dict().keys() == warm.state_dict().keys()  # mergeable with the long-CoT policy
    out = heldout_outcomes(policy, tokenizer, RLConfig(seed=0), 64, max_new_tokens=48)
    assert max(out["tokens"]) <= 40 and sum(out["tokens"]) / 64 < 36  # measured: 35.2 mean, 38 at most
    assert sum(out["correct"]) / 64 > 0.8  # measured 0.953 (61 of 64); 0.926 on 512 problems, 3 seeds


def test_one_line_examples_compress_correct_chains_to_the_line_that_hits():
    other = Problem((1, 1, 1), 3)
    texts = [RIGHT_LONG, "1+1=2: 2+1=3 vs 3!\nanswer (1+1)+1"]
    examples = one_line_examples([PROBLEM, other], [WRONG_LONG, texts[1]])  # the first is wrong: skipped
    assert examples == [(prompt_text(other), texts[1])]
    ((prompt, line),) = one_line_examples([PROBLEM], [WRONG_SHORT.replace("+3)+", "*3)+")])  # a bare right answer
    assert line == RIGHT_LONG and verify(PROBLEM, line)  # written out as its one hitting line
    with pytest.raises(ValueError, match="one response per problem"):
        one_line_examples([PROBLEM], texts)
