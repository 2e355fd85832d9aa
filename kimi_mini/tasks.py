"""Countdown-mini: the book's verifiable reasoning task.

Three numbers and a target; reach the target with two operations from ``+ - *``, using each number
once, as ``(x op y) op z``. The verifier is exact: a program checks every answer, so unlike the report's
math rewards (2.3.5: a chain-of-thought reward model judges answer equivalence) no learned judge is needed;
the number of expressions that hit the target sets the difficulty:
``hard`` = 1, ``mid`` = 2-3, ``easy`` = 4 or more.

Warm-up traces (paper 2.2, long-CoT warm-up) search in context. They pick a pair, compute it, then try
the third number with ``+ - *``, copying the target beside each result so the model can compare; a miss
moves on (backtracks) to the next operation or pair, a hit is marked ``!`` and followed by the answer::

    4 3 5 -> 17
    4*3=12: 12+5=17 vs 17!
    answer (4*3)+5

Tasks speak text: a tokenizer maps it to ids, so the same task serves a character-level tiny policy and
a pretrained one. TinyZero and open-r1 use a larger Countdown (more numbers, also division).

Introduced in {ref}`ch1-task`.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from .config import TaskConfig

__all__ = [
    "Problem",
    "OPS",
    "DIFFICULTIES",
    "apply_op",
    "search_space",
    "one_try_trace",
    "try_text",
    "without_targets",
    "all_expressions",
    "difficulty_of",
    "make_problem",
    "make_problems",
    "answer_parts",
    "HELDOUT_SEED",
    "SEED_STRIDE",
    "heldout_problems",
    "prompt_text",
    "instruction_text",
    "policy_prompts",
    "without_bos",
    "search_trace",
    "guess_trace",
    "first_candidate_trace",
    "short_trace",
    "warmup_example",
    "TraceCounts",
    "trace_counts",
    "answer_line",
    "extract_answer",
    "verify",
    "reward",
]

OPS = ("+", "-", "*")
DIFFICULTIES = ("easy", "mid", "hard")
ANSWER_PREFIX = "answer "
#: The whole answer line: single ASCII digits (``\d`` would also take Arabic-Indic and other digits).
_ANSWER_RE = re.compile(r"answer \(([0-9])([-+*])([0-9])\)([-+*])([0-9])")
_ANSWER_WORD = re.compile(r"answer(?![A-Za-z])")  # the word itself: "answered above" is not an answer line


@dataclass(frozen=True)
class Problem:
    """Three numbers and a target; ``difficulty`` counts the expressions that reach the target."""

    numbers: tuple[int, int, int]
    target: int

    @property
    def n_solutions(self) -> int:
        return sum(value == self.target for _, value in all_expressions(self.numbers))

    @property
    def difficulty(self) -> str:
        return difficulty_of(self.n_solutions)


def apply_op(a: int, op: str, b: int) -> int:
    """``a op b`` for op in ``+ - *``."""
    return a + b if op == "+" else a - b if op == "-" else a * b


def _pairs(numbers: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The three ways to split the numbers into a pair ``(x, y)``, larger first, and the rest ``z``."""
    out = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        x, y = sorted((numbers[i], numbers[j]), reverse=True)
        z = numbers[3 - i - j]
        out.append((x, y, z))
    return out


def search_space(numbers: tuple[int, int, int]) -> list[tuple[int, str, int, str, int, int]]:
    """Every expression ``(x op1 y) op2 z`` as its parts and value ``(x, op1, y, op2, z, value)``, computed
    with :func:`apply_op` (no ``eval``): the pair first (three ways, larger number first), then both operations."""
    return [
        (x, op1, y, op2, z, apply_op(apply_op(x, op1, y), op2, z))
        for x, y, z in _pairs(numbers)
        for op1, op2 in itertools.product(OPS, OPS)
    ]


def all_expressions(numbers: tuple[int, int, int]) -> list[tuple[str, int]]:
    """Every expression ``(x op y) op z`` of the search space with its value (27 for three numbers)."""
    return [(f"({x}{op1}{y}){op2}{z}", value) for x, op1, y, op2, z, value in search_space(numbers)]


def difficulty_of(n_solutions: int) -> str:
    """``hard`` for one solution, ``mid`` for 2-3, ``easy`` for 4 or more."""
    return "hard" if n_solutions <= 1 else "mid" if n_solutions <= 3 else "easy"


def make_problem(rng: random.Random, cfg: TaskConfig = TaskConfig(), difficulty: str | None = None) -> Problem:
    """Draw a problem whose target is the value of a random expression (non-negative).

    With ``difficulty`` set, draw until the problem has that difficulty (the difficulty knob).
    """
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty = {difficulty!r} is invalid: it must be one of {DIFFICULTIES} or None.")
    while True:
        numbers = tuple(rng.randint(cfg.min_number, cfg.max_number) for _ in range(3))
        values = [v for _, v in all_expressions(numbers) if v >= 0]
        if not values:
            continue
        problem = Problem(numbers, rng.choice(values))
        if difficulty is None or problem.difficulty == difficulty:
            return problem


def make_problems(n: int, seed: int, cfg: TaskConfig = TaskConfig(), difficulty: str | None = None) -> list[Problem]:
    """``n`` problems from a seeded generator: the same seed gives the same list."""
    rng = random.Random(seed)
    return [make_problem(rng, cfg, difficulty) for _ in range(n)]


#: Iteration i of an RL run with seed s draws its problems and sampling noise from seed ``s * SEED_STRIDE + i``.
SEED_STRIDE = 1_000_003

#: Seed offset of RL's held-out problems: a run with seed s evaluates on ``make_problems(n, HELDOUT_SEED + s)``,
#: a stream no training iteration draws from (those use ``s * SEED_STRIDE + i``).
#: The warm-up evaluates on its own fixed set (:data:`kimi_mini.warmup.EVAL_SEED`), as its shipped metrics record.
HELDOUT_SEED = 10_000_019


def heldout_problems(n: int, run_seed: int = 0, cfg: TaskConfig = TaskConfig()) -> list[Problem]:
    """The ``n`` held-out problems of an RL run with seed ``run_seed`` (the same for every method compared)."""
    return make_problems(n, seed=HELDOUT_SEED + run_seed, cfg=cfg)


def prompt_text(problem: Problem) -> str:
    """The prompt the policy continues, e.g. ``"4 3 5 -> 17\\n"``."""
    a, b, c = problem.numbers
    return f"{a} {b} {c} -> {problem.target}\n"


def instruction_text(problem: Problem) -> str:
    """The problem as an instruction for a pretrained chat model, asking for the verifier's answer line."""
    a, b, c = problem.numbers
    return (
        f"Use the numbers {a}, {b} and {c}, each exactly once, and two of the operations +, - and *, to make "
        f"{problem.target}. The expression must have the form (x op y) op z. Think it through, then end with "
        "one line in exactly this format, with no spaces inside the expression: answer (2+1)*3"
    )


def policy_prompts(problems: list[Problem], tokenizer, style: str = "trace") -> list[str]:
    """The prompts a policy continues: ``"trace"``, the tiny policy's :func:`prompt_text`; ``"chat"``, the
    :func:`instruction_text` in the tokenizer's chat template (a pretrained instruction model)."""
    if style == "trace":
        return [prompt_text(p) for p in problems]
    if style != "chat":
        raise ValueError(f"prompt style {style!r} is invalid: it must be 'trace' or 'chat'")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "prompt_style = 'chat' needs a tokenizer with a chat template (an instruction model such as "
            "Qwen/Qwen2.5-0.5B-Instruct); this one has none: use prompt_style = 'trace'"
        )
    out = []
    for p in problems:
        messages = [{"role": "user", "content": instruction_text(p)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out.append(without_bos(text, tokenizer))
    return out


def without_bos(text: str, tokenizer) -> str:
    """``text`` without the tokenizer's BOS token at its start: a chat template writes one, and the tokenizer
    adds its own when it encodes the prompt."""
    bos = tokenizer.bos_token or ""
    return text[len(bos) :] if bos and text.startswith(bos) else text


def search_trace(problem: Problem, rng: random.Random) -> str:
    """A warm-up response that searches: pairs in random order, operations in a fixed order.

    Each try is written ``p op z = value vs target``; a miss ends with ``,`` (try the next one), a pair
    with no hit ends its line with ``.`` (backtrack to the next pair), a hit ends with ``!`` and the answer.
    Every problem from :func:`make_problem` has a hit, so the trace always ends in a correct answer.
    """
    t = problem.target
    lines = []
    for x, y, z in rng.sample(_pairs(problem.numbers), 3):
        for op1 in OPS:
            p = apply_op(x, op1, y)
            tries = []
            for op2 in OPS:
                hit = apply_op(p, op2, z) == t
                tries.append(try_text(p, op2, z, t) + ("!" if hit else ""))
                if hit:
                    lines.append(f"{x}{op1}{y}={p}: " + ", ".join(tries))
                    return "\n".join(lines) + f"\n{ANSWER_PREFIX}({x}{op1}{y}){op2}{z}"
            lines.append(f"{x}{op1}{y}={p}: " + ", ".join(tries) + ".")
    raise ValueError(f"{problem} has no solution in the search space")


def guess_trace(problem: Problem, rng: random.Random) -> str:
    """A short response that guesses a random expression without checking it (usually wrong)."""
    expression, _ = rng.choice(all_expressions(problem.numbers))
    return ANSWER_PREFIX + expression


def first_candidate_trace(problem: Problem, rng: random.Random) -> str:
    """A search that stops at its first candidate: one random pair and two random operations, computed and
    checked against the target like a :func:`search_trace` try, then answered whether it hit or not.

    It writes the same steps as a search but never backtracks, so a policy warmed up on it can answer
    longer only if RL teaches it to try again (chapter 5)::

        4 3 5 -> 17
        4+3=7: 7*5=35 vs 17
        answer (4+3)*5
    """
    x, y, z = rng.choice(_pairs(problem.numbers))
    op1, op2 = rng.choice(OPS), rng.choice(OPS)
    return one_try_trace(problem, x, op1, y, op2, z)


def short_trace(problem: Problem, rng: random.Random) -> str:
    """A short chain of thought: the one line of a :func:`search_trace` that hits, then the answer.

    The pair, its first operation and the hit are those of a random solution, so the response is always
    right but shows no search: the policy must pick the line directly (the report's short-CoT regime)::

        4 3 5 -> 17
        4*3=12: 12+5=17 vs 17!
        answer (4*3)+5
    """
    solutions = [c[:5] for c in search_space(problem.numbers) if c[5] == problem.target]
    if not solutions:
        raise ValueError(f"{problem} has no solution in the search space")
    return one_try_trace(problem, *rng.choice(solutions))


def one_try_trace(problem: Problem, x: int, op1: str, y: int, op2: str, z: int) -> str:
    """One try in the grammar of :func:`search_trace` (``!`` if it hits), then its expression as the answer."""
    p = apply_op(x, op1, y)
    mark = "!" if apply_op(p, op2, z) == problem.target else ""
    return f"{x}{op1}{y}={p}: {try_text(p, op2, z, problem.target)}{mark}\n{ANSWER_PREFIX}({x}{op1}{y}){op2}{z}"


def try_text(p: int, op2: str, z: int, target: int) -> str:
    """A try in the grammar of :func:`search_trace`, without its mark: ``p op2 z=value vs target``."""
    return f"{p}{op2}{z}={apply_op(p, op2, z)} vs {target}"


_VS_RE = re.compile(r" vs -?[0-9]+")


def without_targets(response: str) -> str:
    """The response with every comparison's `` vs target`` removed (``6+1=7 vs 6, 6*1=6 vs 6!`` becomes
    ``6+1=7, 6*1=6!``): the same search, but each check must recall the target from the prompt instead
    of reading it next to the result (chapter 8's self-check variant)."""
    return _VS_RE.sub("", response)


def warmup_example(problem: Problem, rng: random.Random, cfg: TaskConfig = TaskConfig()) -> tuple[str, str]:
    """``(prompt, response)`` for SFT: a search trace (:func:`search_trace`; :func:`first_candidate_trace`
    when ``cfg.search_style == "first"``, :func:`short_trace` when ``"short"``), or with probability
    ``guess_fraction`` a guess."""
    guess = rng.random() < cfg.guess_fraction
    if guess:
        response = guess_trace(problem, rng)
    elif cfg.search_style == "first":
        response = first_candidate_trace(problem, rng)
    elif cfg.search_style == "short":
        response = short_trace(problem, rng)
    else:
        response = search_trace(problem, rng)
    return prompt_text(problem), response


#: A try inside a response: ``value op z = result`` after the pair's ``:`` or a previous try's ``,``.
_TRY_RE = re.compile(r"(?::|,) -?[0-9]+[-+*][0-9]=-?[0-9]+")


@dataclass(frozen=True)
class TraceCounts:
    """What a response did before answering (the grammar of :func:`search_trace`).

    ``candidates``: full expressions computed (tries); ``checks``: results compared with the target
    (``vs``); ``backtracks``: partial solutions (a pair and its first operation) abandoned, i.e. lines
    ending in ``.``; ``pairs``: partial solutions opened (lines with ``:``).
    """

    candidates: int
    checks: int
    backtracks: int
    pairs: int

    @property
    def searched(self) -> bool:
        """Whether the response tried at least one candidate before answering (not a bare guess)."""
        return self.candidates > 0


def trace_counts(response: str) -> TraceCounts:
    """Count the tries, checks, backtracks and opened pairs of a response (:class:`TraceCounts`). Never raises."""
    if not isinstance(response, str):
        return TraceCounts(0, 0, 0, 0)
    lines = [line.strip(" \t\r") for line in response.split("\n")]
    return TraceCounts(
        candidates=len(_TRY_RE.findall(response)),
        checks=response.count(" vs "),
        backtracks=sum(line.endswith(".") and ":" in line for line in lines),
        pairs=sum(":" in line for line in lines),
    )


def answer_line(response: str) -> str | None:
    """The last line of ``response`` whose first word is ``answer`` (spaces, tabs and ``\\r`` around it
    removed; ``answered`` or ``answers`` do not count), or None. Never raises."""
    if not isinstance(response, str):
        return None
    lines = (line.strip(" \t\r") for line in response.split("\n"))
    answers = [line for line in lines if _ANSWER_WORD.match(line)]
    return answers[-1] if answers else None


def extract_answer(response: str) -> str | None:
    """The expression ``(x op y) op z`` of the response's :func:`answer_line`, or None unless that whole
    line is exactly ``answer (x op y) op z`` with single ASCII digits. Never raises."""
    line = answer_line(response)
    m = _ANSWER_RE.fullmatch(line) if line is not None else None
    return line[len(ANSWER_PREFIX) :] if m else None


def answer_parts(response: str) -> tuple[int, str, int, str, int] | None:
    """``(x, op1, y, op2, z)`` of the response's answer ``(x op1 y) op2 z`` (:func:`extract_answer`), or None."""
    answer = extract_answer(response)
    if answer is None:
        return None
    x, op1, y, op2, z = _ANSWER_RE.fullmatch(ANSWER_PREFIX + answer).groups()
    return int(x), op1, int(y), op2, int(z)


def verify(problem: Problem, response: str) -> int:
    """1 if the response's last answer line is exactly ``answer (x op y) op z``, uses each of the problem's
    numbers once and reaches the target, else 0. Text after the expression makes the line invalid
    (``answer (4*3)+55`` is not ``(4*3)+5``). Never raises."""
    parts = answer_parts(response)
    if parts is None:
        return 0
    x, op1, y, op2, z = parts
    if sorted((x, y, z)) != sorted(problem.numbers):
        return 0
    return int(apply_op(apply_op(x, op1, y), op2, z) == problem.target)


def reward(problem: Problem, response: str) -> float:
    """The verifier's reward r(x, y, y*) in {0, 1} (paper 2.3.1)."""
    return float(verify(problem, response))
