from kimi_mini.config import SampleConfig
from kimi_mini.evaluation import evaluate_policy, generate_responses, summarize, summarize_by_difficulty
from kimi_mini.tasks import make_problems

PROMPTS = ["4 3 5 -> 17\n", "1 2 3 -> 6\n", "5 5 1 -> 24\n"]


def test_greedy_is_deterministic_and_respects_the_budget(tokenizer, tiny_policy):
    cfg = SampleConfig(max_new_tokens=20, temperature=0.0, batch_size=2)
    a = generate_responses(tiny_policy.eval(), tokenizer, PROMPTS, cfg)
    b = generate_responses(tiny_policy, tokenizer, PROMPTS, cfg)
    assert a == b and len(a) == 3
    for r in a:
        assert 1 <= r["tokens"] <= 20
        assert r["finished"] or r["tokens"] == 20


def test_batching_does_not_change_greedy_output(tokenizer, tiny_policy):
    one = generate_responses(
        tiny_policy.eval(), tokenizer, PROMPTS, SampleConfig(max_new_tokens=16, temperature=0.0, batch_size=1)
    )
    all_ = generate_responses(
        tiny_policy, tokenizer, PROMPTS, SampleConfig(max_new_tokens=16, temperature=0.0, batch_size=3)
    )
    assert [r["text"] for r in one] == [r["text"] for r in all_]  # left padding is masked correctly


def test_sampling_is_seeded(tokenizer, tiny_policy):
    cfg = SampleConfig(max_new_tokens=16, temperature=1.0)
    a = generate_responses(tiny_policy.eval(), tokenizer, PROMPTS, cfg, seed=1)
    b = generate_responses(tiny_policy, tokenizer, PROMPTS, cfg, seed=1)
    assert a == b


def test_evaluate_and_summaries(tokenizer, tiny_policy):
    problems = make_problems(12, seed=0)
    records = evaluate_policy(tiny_policy.eval(), tokenizer, problems, SampleConfig(max_new_tokens=8))
    assert [r["difficulty"] for r in records] == [p.difficulty for p in problems]
    table = summarize_by_difficulty(records)
    assert table["all"]["n"] == 12 and sum(table[d]["n"] for d in table if d != "all") == 12
    fake = [
        dict(correct=1, tokens=10, finished=True, searched=True),
        dict(correct=0, tokens=30, finished=False, searched=False),
    ]
    assert summarize(fake) == dict(n=2, accuracy=0.5, mean_tokens=20.0, p95_tokens=29.0, finished=0.5, searched=0.5)
