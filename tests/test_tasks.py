import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimi_mini.config import TaskConfig
from kimi_mini.tasks import (
    DIFFICULTIES,
    Problem,
    all_expressions,
    difficulty_of,
    extract_answer,
    guess_trace,
    make_problem,
    make_problems,
    prompt_text,
    reward,
    search_trace,
    verify,
    warmup_example,
)

problems = st.builds(Problem, st.tuples(*[st.integers(1, 5)] * 3), st.integers(-5, 130))


def test_all_expressions_has_27_and_is_correct():
    exprs = all_expressions((4, 3, 5))
    assert len(exprs) == 27
    for text, value in exprs:
        assert eval(text) == value  # test-only: the strings are our own


def test_generator_is_seeded():
    assert make_problems(50, seed=3) == make_problems(50, seed=3)
    assert make_problems(50, seed=3) != make_problems(50, seed=4)


def test_targets_are_reachable_and_nonnegative():
    for p in make_problems(300, seed=0):
        assert p.target >= 0
        assert p.n_solutions >= 1
        assert all(1 <= n <= 5 for n in p.numbers)


def test_difficulty_knob():
    for level in DIFFICULTIES:
        assert {p.difficulty for p in make_problems(30, seed=1, difficulty=level)} == {level}
    with pytest.raises(ValueError, match="difficulty"):
        make_problem(random.Random(0), difficulty="impossible")


def test_difficulty_thresholds():
    assert [difficulty_of(n) for n in (1, 2, 3, 4, 9)] == ["hard", "mid", "mid", "easy", "easy"]


def test_all_three_difficulties_occur():
    counts = Counter(p.difficulty for p in make_problems(2000, seed=0))
    assert all(counts[d] > 200 for d in DIFFICULTIES)


def test_search_traces_are_correct_and_backtrack():
    rng = random.Random(0)
    lengths = {d: [] for d in DIFFICULTIES}
    for p in make_problems(500, seed=0):
        trace = search_trace(p, rng)
        assert verify(p, trace) == 1
        assert trace.count("!") == 1
        lengths[p.difficulty].append(len(trace))
    mean = {d: sum(v) / len(v) for d, v in lengths.items()}
    assert mean["hard"] > mean["mid"] > mean["easy"]  # length grows with difficulty
    assert max(lengths["hard"]) > 3 * mean["easy"]  # a long tail


def test_example_trace():
    p = Problem((4, 3, 5), 17)
    assert prompt_text(p) == "4 3 5 -> 17\n"
    # Find a seed whose first pair is 4*3: the trace then hits on its first try with +.
    traces = {search_trace(p, random.Random(s)) for s in range(20)}
    assert (
        "4+3=7: 7+5=12 vs 17, 7-5=2 vs 17, 7*5=35 vs 17.\n4-3=1: 1+5=6 vs 17, 1-5=-4 vs 17, 1*5=5 vs 17.\n4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5"
        in traces
    )


def test_guesses_are_short_and_mostly_wrong():
    rng = random.Random(0)
    ps = make_problems(2000, seed=0)
    accuracy = sum(verify(p, guess_trace(p, rng)) for p in ps) / len(ps)
    assert 0.05 < accuracy < 0.2
    assert all(len(guess_trace(p, rng)) <= len("answer (5*5)*5") for p in ps)


def test_warmup_mix_respects_guess_fraction():
    rng = random.Random(0)
    cfg = TaskConfig(guess_fraction=0.3)
    responses = [warmup_example(p, rng, cfg)[1] for p in make_problems(2000, seed=0)]
    share = sum(" vs " not in r for r in responses) / len(responses)
    assert 0.26 < share < 0.34
    assert all(" vs " not in warmup_example(p, rng, TaskConfig(guess_fraction=1.0))[1] for p in make_problems(50, 1))


def test_extract_answer_takes_the_last():
    assert extract_answer("answer (1+2)*3 then answer (3-1)+2") == "(3-1)+2"
    assert extract_answer("no answer here") is None
    assert extract_answer("answer 1+2+3") is None


def test_verify_checks_numbers_and_value():
    p = Problem((4, 3, 5), 17)
    assert verify(p, "answer (4*3)+5") == 1
    assert verify(p, "answer (3*4)+5") == 1
    assert verify(p, "answer (4*3)+4") == 0  # wrong numbers
    assert verify(p, "answer (4*4)+1") == 0  # right value, wrong numbers
    assert verify(p, "answer (4+3)+5") == 0  # wrong value
    assert reward(p, "answer (4*3)+5") == 1.0


@settings(max_examples=300, deadline=None)
@given(problems, st.text())
def test_verifier_never_raises_on_any_text(problem, text):
    assert verify(problem, text) in (0, 1)
    assert verify(problem, "answer " + text) in (0, 1)


@settings(max_examples=100, deadline=None)
@given(problems, st.one_of(st.none(), st.integers(), st.binary()))
def test_verifier_never_raises_on_non_text(problem, value):
    assert verify(problem, value) == 0
