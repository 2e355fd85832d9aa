import ast
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
    answer_line,
    difficulty_of,
    extract_answer,
    first_candidate_trace,
    guess_trace,
    make_problem,
    make_problems,
    prompt_text,
    reward,
    search_trace,
    short_trace,
    trace_counts,
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


def test_extract_answer_takes_the_last_answer_line_whole():
    assert extract_answer("answer (1+2)*3\nanswer (3-1)+2") == "(3-1)+2"
    assert extract_answer("answer (1+2)*3\n  answer (3-1)+2 \r\n") == "(3-1)+2"  # spaces around the line
    assert extract_answer("answer (1+2)*3 then answer (3-1)+2") is None  # one line, not one expression
    assert extract_answer("answer (1+2)*3\nanswer (3-1)+2!") is None  # the last answer line counts
    assert extract_answer("no answer here") is None
    assert extract_answer("answer 1+2+3") is None
    assert answer_line("4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5\n") == "answer (4*3)+5"
    assert answer_line("the answer is 17") is None and answer_line(None) is None


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


def test_text_after_the_answer_is_not_ignored():
    """An older verifier read only a prefix of the answer line: both of these scored 1 for (3, 2, 4) -> 6."""
    p = Problem((3, 2, 4), 6)
    assert verify(p, "answer (4-2)*3") == 1
    assert verify(p, "answer (4-2)*355") == 0  # (4-2)*355 = 710
    assert verify(p, "answer (4-2)*3*0") == 0  # 0


def test_only_the_word_answer_starts_an_answer_line():
    """'answered' or 'answers' after the answer line is prose, not a second (broken) answer."""
    p = Problem((4, 3, 5), 17)
    assert verify(p, "answer (4*3)+5\nanswered above") == 1
    assert verify(p, "answer (4*3)+5\r\nanswers: see above \r\n") == 1
    assert verify(p, "answer (4*3)+5\nanswer") == 0  # an unfinished answer line still counts, and fails
    assert verify(p, "answer (4*3)+5\nanswer: (4*3)+5") == 0  # so does a malformed one


SUFFIXES = ("0", "*0", ".5", "e3", "5", "!", " 7", "=6", "+0", "x")
FOREIGN_DIGITS = {
    "arabic-indic": "\u0660",
    "extended arabic-indic": "\u06f0",
    "devanagari": "\u0966",
    "full-width": "\uff10",
    "mathematical bold": "\U0001d7ce",
}


def _foreign(expression: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in expression)


def test_on_500_problems_only_the_exact_answer_line_scores():
    for p in make_problems(500, seed=11):
        right = next(text for text, value in all_expressions(p.numbers) if value == p.target)
        assert verify(p, "answer " + right) == 1
        for suffix in SUFFIXES:
            assert verify(p, f"answer {right}{suffix}") == 0, (p, suffix)
        for name, zero in FOREIGN_DIGITS.items():
            assert verify(p, "answer " + _foreign(right, zero)) == 0, (p, name)


def _written_value(response: str, numbers) -> int | None:
    """An independent reading of the last answer line: Python's own parser, whole numbers with + - * only,
    each of ``numbers`` once. None if the line is anything else."""
    lines = [line.strip(" \t\r") for line in response.split("\n") if line.strip(" \t\r").startswith("answer")]
    if not lines or not lines[-1].startswith("answer "):
        return None
    try:
        tree = ast.parse(lines[-1][len("answer ") :], mode="eval").body
    except SyntaxError:
        return None
    used = []

    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 9:
            used.append(node.value)
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult):
            a, b = value(node.left), value(node.right)
            return a + b if isinstance(node.op, ast.Add) else a - b if isinstance(node.op, ast.Sub) else a * b
        raise ValueError(ast.dump(node))

    try:
        result = value(tree)
    except ValueError:
        return None
    return result if sorted(used) == sorted(numbers) else None


digits = st.sampled_from("0123456789") | st.sampled_from(["\u0664", "\uff13", "\u0967", "\u00b2", "\u2075"])
ops = st.sampled_from("+-*") | st.sampled_from(["/", "x", "**"])
junk = st.sampled_from(["", "", "", "0", "*0", ".5", "e3", "5", " ", "\t", "\r", "!", ")", "\nanswer", "\n"])


@st.composite
def answer_responses(draw):
    """A problem and a response whose last line is an answer built from pieces: usually the problem's
    numbers in the expected shape (often reaching the target), sometimes with foreign digits, other
    operators, text after the expression or an earlier answer line."""
    a, b, c = (draw(st.integers(0, 9)) for _ in range(3))
    x, y, z = draw(st.permutations([str(a), str(b), str(c)]))
    x, y, z = (draw(digits) if draw(st.integers(0, 9)) == 0 else d for d in (x, y, z))
    op1, op2 = draw(ops), draw(ops)
    written = f"({x}{op1}{y}){op2}{z}" if draw(st.integers(0, 9)) else f"{x}{op1}{y}{op2}{z}"
    line = f"answer {written}{draw(junk)}"
    target = apply(apply(a, op1, b), op2, c) if op1 in "+-*" and op2 in "+-*" else 0
    target = target if draw(st.booleans()) else draw(st.integers(-5, 130))
    before = draw(st.sampled_from(["", "4*3=12: 12+5=17 vs 17!\n", "answer (1+2)*3\n", "text answer (1+2)*3\n"]))
    return Problem((a, b, c), target), before + line + draw(st.sampled_from(["", "\n", " ", "\nmore text"]))


def apply(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


@settings(max_examples=2000, deadline=None)
@given(answer_responses())
def test_every_accepted_answer_is_written_right(case):
    """Property: whenever the verifier says 1, the last answer line, read by Python's parser, is an
    expression of + - * over exactly the problem's numbers, and its value is the target."""
    problem, response = case
    if verify(problem, response):
        assert _written_value(response, problem.numbers) == problem.target, response


def test_the_property_test_sees_accepted_answers():
    """The generator above is not vacuous: a good share of its responses are accepted."""
    from hypothesis import find

    problem, response = find(answer_responses(), lambda case: verify(*case) == 1)
    assert _written_value(response, problem.numbers) == problem.target


def test_first_candidate_trace_checks_one_candidate_and_answers_it():
    rng = random.Random(0)
    hits = 0
    for p in make_problems(400, seed=5):
        trace = first_candidate_trace(p, rng)
        counts = trace_counts(trace)
        assert (counts.candidates, counts.checks, counts.backtracks, counts.pairs) == (1, 1, 0, 1), trace
        first, answer = trace.split("\n")
        pair, attempt = first.split(": ")  # "x op1 y=p" and "p op2 z=value vs target"
        expression = f"({pair.split('=')[0]}){attempt[len(pair.split('=')[1]) :].split('=')[0]}"
        assert answer == f"answer {expression}", trace  # it answers the candidate it checked
        assert verify(p, trace) == first.endswith("!"), trace  # the mark says whether it hit
        hits += verify(p, trace)
    # a random candidate hits about as often as a random guess: 1 to 27 of the 27 expressions
    assert 0.05 < hits / 400 < 0.3


def test_trace_counts_reads_the_search_grammar():
    trace = "2+1=3: 3+5=8 vs 10, 3-5=-2 vs 10, 3*5=15 vs 10.\n2*1=2: 2+5=7 vs 10, 2*5=10 vs 10!\nanswer (2*1)*5"
    counts = trace_counts(trace)
    assert (counts.candidates, counts.checks, counts.backtracks, counts.pairs) == (5, 5, 1, 2) and counts.searched
    unchecked = trace_counts("4*3=12: 12+5=17, 12-5=7\nanswer (4*3)+5")  # tries without comparing to the target
    assert (unchecked.candidates, unchecked.checks) == (2, 0)
    assert not trace_counts("answer (4*3)+5").searched and not trace_counts(None).searched
    rng = random.Random(1)
    for p in make_problems(200, seed=2):  # a search's tries: every candidate checked, one line per pair
        c = trace_counts(search_trace(p, rng))
        assert c.candidates == c.checks >= 1 and c.backtracks == c.pairs - 1


def test_warmup_search_styles_and_the_default_stream():
    rng_a, rng_b = random.Random(3), random.Random(3)
    default = [warmup_example(p, rng_a)[1] for p in make_problems(50, 0)]
    explicit = [warmup_example(p, rng_b, TaskConfig(search_style="backtrack"))[1] for p in make_problems(50, 0)]
    assert default == explicit  # the shipped warm-up's data stream is unchanged
    rng = random.Random(4)
    first = [
        warmup_example(p, rng, TaskConfig(guess_fraction=0.0, search_style="first"))[1] for p in make_problems(300, 0)
    ]
    assert all(trace_counts(r).candidates == 1 for r in first)
    only = [warmup_example(p, rng, TaskConfig(guess_fraction=0.0))[1] for p in make_problems(300, 0)]
    assert all(verify(p, r) for p, r in zip(make_problems(300, 0), only))


def test_short_trace_is_the_hitting_line_of_a_search():
    rng = random.Random(6)
    for p in make_problems(300, seed=7):
        trace = short_trace(p, rng)
        counts = trace_counts(trace)
        assert verify(p, trace) == 1 and (counts.candidates, counts.pairs, counts.backtracks) == (1, 1, 0), trace
        assert trace.split("\n")[0].endswith("!")


def test_without_targets_removes_every_written_target_and_keeps_the_answer():
    from kimi_mini.tasks import without_targets

    problem, rng = make_problems(1, seed=3)[0], random.Random(0)
    trace = search_trace(problem, rng)
    recalled = without_targets(trace)
    assert " vs " not in recalled and verify(problem, recalled)
    assert recalled.count(",") == trace.count(",") and recalled.count("!") == 1  # same tries, same hit
    assert without_targets("6*1=6 vs -6!") == "6*1=6!"
