import pytest

from kimi_mini.config import SampleConfig
from kimi_mini.evaluation import generate_responses
from kimi_mini.search import beam_answers, best_of_n, direct_answers
from kimi_mini.tasks import Problem, make_problems, prompt_text
from kimi_mini.warmup import load_warmup_policy

PROBLEM = Problem((4, 3, 5), 17)


def test_best_of_n_rules():
    texts = ["answer (4+3)+5", "answer (4*3)+5", "answer (4+3)+5", "no answer"]
    logprobs = [-5.0, -1.0, -6.0, -0.5]
    assert best_of_n([PROBLEM], texts, logprobs, 4, "vote") == [0]  # (4+3)+5 twice: the majority, wrong
    assert best_of_n([PROBLEM], texts, logprobs, 4, "logprob") == [0]  # the most likely is no answer at all
    assert best_of_n([PROBLEM], texts, logprobs[:3] + [-9.0], 4, "logprob") == [1]
    assert best_of_n([PROBLEM], texts, logprobs, 4, "verifier") == [1]  # pass@4
    assert best_of_n([PROBLEM, PROBLEM], texts[:2] + texts[2:], logprobs, 2, "verifier") == [1, 0]
    with pytest.raises(ValueError, match="rule = 'best'"):
        best_of_n([PROBLEM], texts, logprobs, 4, "best")


def test_direct_answers_skip_the_reasoning():
    policy, tokenizer = load_warmup_policy()
    problems = make_problems(8, seed=1)
    texts, tokens, logprobs = direct_answers(policy, tokenizer, problems, 4, seed=0)
    assert len(texts) == len(tokens) == len(logprobs) == 32
    assert all(t.startswith("answer ") and "\n" not in t for t in texts)
    assert all(n <= 16 for n in tokens) and all(lp < 0 for lp in logprobs)


def test_beam_of_width_one_is_greedy_decoding():
    policy, tokenizer = load_warmup_policy()
    problems = make_problems(16, seed=2)
    texts, tokens = beam_answers(policy, tokenizer, problems, width=1)
    greedy = generate_responses(
        policy,
        tokenizer,
        [prompt_text(p) + "answer " for p in problems],
        SampleConfig(max_new_tokens=16, temperature=0),
    )
    assert texts == ["answer " + g["text"] for g in greedy]
    assert tokens == [g["tokens"] for g in greedy]
    wide, wide_tokens = beam_answers(policy, tokenizer, problems, width=4)
    assert all(w == 4 * len(t) - 4 * len("answer ") + 4 for w, t in zip(wide_tokens, wide))  # 4 x (chars + <eos>)
