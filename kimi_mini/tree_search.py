"""Step-level tree search over Countdown-mini's reasoning steps, against the search one chain does in context.

k1.5 searches inside one long response (report 2.2: planning, checking and backtracking in context) and
uses no Monte Carlo tree search or process reward model. The alternative searches *outside* the context
over the chain's own steps, with the same policy scoring them. The tree of a problem, in the grammar of
:func:`kimi_mini.tasks.search_trace`:

- the root is the prompt, e.g. ``"4 2 1 -> 6\\n"``;
- depth 1 holds the 9 first steps (a pair and its operation, as :func:`kimi_mini.tasks.search_space`
  orders them): ``"4+2=6: "``;
- depth 2 holds the 3 tries under each first step, the leaves: ``"6*1=6 vs 6"``; 27 in all.

A step's score is log pi(step | prompt + its path): the sum of its tokens' log-probs at temperature 1,
teacher-forced (:func:`path_logprobs`). A branch sees only its own path, never its siblings, unlike a chain
whose later lines follow the misses before them. The policy's own check of a leaf is log pi("!" | prompt +
path), the probability that its chain would mark the try as a hit. A step's score depends only on its path,
so :func:`score_trees` scores every path of a tree in one batched pass and the searches read the scores as
they expand; each search counts only the steps it expanded.

Searches (each returns an :class:`Outcome` per problem): :func:`best_first` with the exact verifier at the
leaves or with no verifier at all, and :func:`mcts` (PUCT, Silver et al. 2017 after Rosin 2011; the UCT
of Kocsis & Szepesvari 2006 with the policy's step probabilities as priors), whose leaf values come from
the exact verifier or from the policy's own check.

Tokens are counted as generated tokens, as in :mod:`kimi_mini.search`: every step text a search scores
(all the children of a node it expands, each once), plus one token per leaf whose policy check it reads,
plus the answer line (:data:`ANSWER_TOKENS`: newline, ``answer (x op y) op z`` and end-of-sequence). A
search that answers nothing costs its steps only. Introduced in {ref}`ch8-search`.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

import torch

from .tasks import ANSWER_PREFIX, Problem, apply_op, prompt_text, search_space, try_text, verify

__all__ = [
    "ANSWER_TOKENS",
    "LEAF_VALUES",
    "Step",
    "Leaf",
    "StepTree",
    "Outcome",
    "tree_steps",
    "path_logprobs",
    "tree_from_scores",
    "score_trees",
    "best_first",
    "mcts",
]

#: The answer line's tokens: ``"\nanswer (4+2)*1"`` (15 characters, one token each) and end-of-sequence.
ANSWER_TOKENS = len("\n" + ANSWER_PREFIX + "(4+2)*1") + 1
#: MCTS leaf values: the exact verifier (1 if the try hits the target, else 0) or the policy's own check
#: (its probability that the try ends with ``!``, read for one generated token).
LEAF_VALUES = ("verifier", "policy_check")


@dataclass(frozen=True)
class Step:
    """A node: its text, its token count and log pi(text | prompt + path), the policy's score of the step."""

    text: str
    tokens: int
    logprob: float


@dataclass(frozen=True)
class Leaf(Step):
    """A try (depth 2): its full expression ``(x op1 y) op2 z``, its value and log pi("!" | prompt + path)."""

    expression: str
    value: int
    hit_logprob: float


@dataclass(frozen=True)
class StepTree:
    """A problem's scored tree: ``firsts`` the 9 first steps, ``tries[i]`` the 3 leaves under ``firsts[i]``."""

    problem: Problem
    firsts: tuple[Step, ...]
    tries: tuple[tuple[Leaf, ...], ...]


@dataclass(frozen=True)
class Outcome:
    """A search's result: the answer expression (None if it gave none), 0/1 by the exact verifier, tokens."""

    answer: str | None
    correct: int
    tokens: int


def tree_steps(problem: Problem) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """The tree's texts: 9 ``(first step, [(try, expression, value)] x 3)``; try ``j`` of first step ``i`` is
    row ``3 * i + j`` of :func:`kimi_mini.tasks.search_space`."""
    space = search_space(problem.numbers)  # 27 (x, op1, y, op2, z, value), 3 per first step
    out = []
    for i in range(9):
        x, op1, y, _, z, _ = space[3 * i]
        p = apply_op(x, op1, y)
        group = space[3 * i : 3 * i + 3]
        leaves = [(try_text(p, op2, z, problem.target), f"({x}{op1}{y}){op2}{z}", v) for *_, op2, _, v in group]
        out.append((f"{x}{op1}{y}={p}: ", leaves))
    return out


def _encode_paths(tokenizer, prompts: list[str], paths: list[list[str]]) -> tuple[list[list[int]], torch.Tensor]:
    """Token ids of each ``prompt + path`` and the token counts of its prefixes: (B, K + 1), prompt first."""
    if len({len(path) for path in paths}) > 1:
        raise ValueError("paths must all have the same number of steps")
    prefixes = [prompt + "".join(path[:k]) for prompt, path in zip(prompts, paths) for k in range(len(path) + 1)]
    ids = tokenizer(prefixes)["input_ids"]
    K1 = len(paths[0]) + 1
    rows = [ids[r * K1 : (r + 1) * K1] for r in range(len(paths))]
    for row in rows:
        if any(longer[: len(shorter)] != shorter for shorter, longer in zip(row, row[1:])):
            raise ValueError(f"tokenizer: {tokenizer.decode(row[-1])!r} does not split at its steps' boundaries")
    return [row[-1] for row in rows], torch.tensor([[len(p) for p in row] for row in rows])  # (B, K + 1)


@torch.no_grad()
def path_logprobs(policy, tokenizer, prompts: list[str], paths: list[list[str]]):
    """Teacher-forced scores of paths of K steps, temperature 1, one forward pass (rows right-padded, so
    no row sees another and no real token sees padding).

    Returns ``(steps, tokens, hit)``: ``steps`` (B, K) log pi(step_k | prompt, step_1..k-1), the sum of the
    step's token log-probs; ``tokens`` (B, K) each step's token count; ``hit`` (B,) log pi("!" | prompt +
    whole path), the policy's own check of the last step."""
    bang = tokenizer.convert_tokens_to_ids("!")
    if bang is None or bang == tokenizer.unk_token_id:
        raise ValueError("tokenizer: '!' must be one token")
    rows, bounds = _encode_paths(tokenizer, prompts, paths)  # B lists, (B, K + 1)
    device = next(policy.parameters()).device
    B, T = len(rows), max(map(len, rows))
    input_ids = torch.full((B, T), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((B, T), dtype=torch.long)  # (B, T)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
    input_ids, mask, bounds = input_ids.to(device), mask.to(device), bounds.to(device)
    logits = policy(input_ids=input_ids, attention_mask=mask).logits  # (B, T, V)
    logp = torch.log_softmax(logits.double(), dim=-1)  # (B, T, V)
    picked = logp[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1): position t predicts t+1
    cum = torch.nn.functional.pad(picked.cumsum(dim=1), (1, 0))  # (B, T): log-prob of tokens 1..t
    at = cum.gather(1, bounds - 1)  # (B, K + 1): log-prob of each prefix (after the first token)
    hit = logp[torch.arange(B, device=device), bounds[:, -1] - 1, bang]  # (B,)
    return (at[:, 1:] - at[:, :-1]).float().cpu(), bounds.diff(dim=1).cpu(), hit.float().cpu()


def _grid(values, shape: tuple[int, ...], name: str) -> list:
    """``values`` as nested lists of ``shape``, or a ValueError naming ``name``."""
    t = torch.as_tensor(values)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    return t.tolist()


def tree_from_scores(problem: Problem, first, tries, hits, first_tokens=None, try_tokens=None) -> StepTree:
    """A :class:`StepTree` from the policy's scores: ``first`` (9,) log pi of the first steps, ``tries``
    (9, 3) of the tries given their first step, ``hits`` (9, 3) log pi("!") after each try. Token counts
    (9,) and (9, 3) default to the texts' lengths (the book's tokenizer: one token per character)."""
    steps = tree_steps(problem)
    first, tries, hits = _grid(first, (9,), "first"), _grid(tries, (9, 3), "tries"), _grid(hits, (9, 3), "hits")
    first_tokens = [len(s) for s, _ in steps] if first_tokens is None else _grid(first_tokens, (9,), "first_tokens")
    if try_tokens is None:
        try_tokens = [[len(text) for text, _, _ in leaves] for _, leaves in steps]
    try_tokens = _grid(try_tokens, (9, 3), "try_tokens")
    firsts = tuple(Step(text, first_tokens[i], first[i]) for i, (text, _) in enumerate(steps))
    leaves = tuple(
        tuple(Leaf(text, try_tokens[i][j], tries[i][j], e, v, hits[i][j]) for j, (text, e, v) in enumerate(group))
        for i, (_, group) in enumerate(steps)
    )
    return StepTree(problem, firsts, leaves)


def score_trees(policy, tokenizer, problems: list[Problem], batch_problems: int = 16) -> list[StepTree]:
    """Every problem's :class:`StepTree`, scored by ``policy``: the 27 paths ``prompt + first + try`` of
    ``batch_problems`` problems per forward pass (:func:`path_logprobs`)."""
    if batch_problems < 1:
        raise ValueError(f"batch_problems = {batch_problems} is invalid: it must be at least 1")
    out = []
    for start in range(0, len(problems), batch_problems):
        chunk = problems[start : start + batch_problems]
        paths = [[first, text] for p in chunk for first, leaves in tree_steps(p) for text, _, _ in leaves]
        prompts = [prompt_text(p) for p in chunk for _ in range(27)]
        steps, tokens, hit = path_logprobs(policy, tokenizer, prompts, paths)  # (27b, 2), (27b, 2), (27b,)
        steps, tokens, hit = steps.view(-1, 9, 3, 2), tokens.view(-1, 9, 3, 2), hit.view(-1, 9, 3)  # (b, 9, 3, ...)
        for k, problem in enumerate(chunk):  # a first step's score is read from its first try's path
            out.append(
                tree_from_scores(
                    problem, steps[k, :, 0, 0], steps[k, ..., 1], hit[k], tokens[k, :, 0, 0], tokens[k, ..., 1]
                )
            )
    return out


def _check_budget(max_tokens) -> None:
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens = {max_tokens!r} is invalid: it must be a positive int or None (no budget)")


def _fits(spent: int, cost: int, max_tokens: int | None) -> bool:
    """Whether ``cost`` more tokens and then the answer line stay within ``max_tokens``."""
    return max_tokens is None or spent + cost + ANSWER_TOKENS <= max_tokens


def _outcome(tree: StepTree, leaf: Leaf | None, spent: int) -> Outcome:
    """Answer ``leaf`` (checked by :func:`kimi_mini.tasks.verify`) after ``spent`` tokens, or answer nothing."""
    if leaf is None:
        return Outcome(None, 0, spent)
    return Outcome(leaf.expression, verify(tree.problem, ANSWER_PREFIX + leaf.expression), spent + ANSWER_TOKENS)


def best_first(tree: StepTree, max_tokens: int | None = None, leaf_check: bool = True) -> Outcome:
    """Best-first search with priority log pi(path), the cumulative log-prob; expanding a node scores all
    its children. ``leaf_check=True``: the exact verifier checks each leaf as it is scored (value ==
    target, no tokens) and the search answers the first hit (the most likely one if a node holds two).
    ``leaf_check=False``: no verifier; the first leaf popped is the most likely leaf of the whole tree
    (log-probs only fall along a path), so the search answers it there: a larger budget would change
    nothing. A node is expanded only if its children and the answer line fit in ``max_tokens``; when
    the budget stops the search it answers the most likely leaf scored so far, or nothing."""
    _check_budget(max_tokens)
    if not isinstance(leaf_check, bool):
        raise ValueError(f"leaf_check = {leaf_check!r} is invalid: it must be True or False")
    spent, seen = 0, []  # seen: (log pi(path), leaf) of every leaf scored
    # (-log pi(path), is a node, order, first step, try or -1): on equal scores leaves first, then tree order
    frontier = [(-s.logprob, True, i, i, -1) for i, s in enumerate(tree.firsts)]
    cost = sum(s.tokens for s in tree.firsts)
    if not _fits(spent, cost, max_tokens):
        return _outcome(tree, None, spent)
    spent += cost
    heapq.heapify(frontier)
    while frontier:
        neg, _, _, i, j = heapq.heappop(frontier)
        if j >= 0:  # a leaf: with the verifier a miss; without it the answer
            if leaf_check:
                continue
            break
        cost = sum(leaf.tokens for leaf in tree.tries[i])
        if not _fits(spent, cost, max_tokens):
            break
        spent += cost
        new = [(-neg + leaf.logprob, leaf) for leaf in tree.tries[i]]
        seen += new
        hits = [pair for pair in new if pair[1].value == tree.problem.target]
        if leaf_check and hits:
            return _outcome(tree, max(hits, key=lambda pair: pair[0])[1], spent)
        for k, (score, _) in enumerate(new):
            heapq.heappush(frontier, (-score, False, 3 * i + k, i, k))
    return _outcome(tree, max(seen, key=lambda pair: pair[0])[1] if seen else None, spent)


def _softmax(logprobs: list[float], temperature: float) -> list[float]:
    """Probabilities normalised over siblings, pi^(1/temperature): the priors P(s, a)."""
    return torch.softmax(torch.tensor(logprobs, dtype=torch.float64) / temperature, dim=0).tolist()


def _puct_pick(
    prior: list[float], visits: list[int], total: list[float], c_puct: float, rng: random.Random, allowed=None
) -> int:
    """argmax_a Q(s, a) + c_puct P(s, a) sqrt(N(s)) / (1 + N(s, a)) (Silver et al. 2017), N(s) counting
    the node's own expansion as its first visit, Q = 0 before a child's first visit; ties broken by ``rng``.
    ``allowed``: the children that may be picked (default: all)."""
    n_parent = 1 + sum(visits)
    allowed = range(len(prior)) if allowed is None else allowed
    scores = {
        a: (total[a] / visits[a] if visits[a] else 0.0) + c_puct * prior[a] * math.sqrt(n_parent) / (1 + visits[a])
        for a in allowed
    }
    best = max(scores.values())
    return rng.choice([a for a, s in scores.items() if s >= best - 1e-12])


def _check_mcts_args(simulations, max_tokens, c_puct, leaf_value, prior_temperature, solver=False) -> None:
    if not isinstance(solver, bool) or (solver and leaf_value != "verifier"):
        raise ValueError(f"solver = {solver!r} is invalid: it must be a bool, and True only with the verifier")
    if not isinstance(simulations, int) or simulations < 1:
        raise ValueError(f"simulations = {simulations!r} is invalid: it must be a positive int")
    _check_budget(max_tokens)
    if not c_puct >= 0:
        raise ValueError(f"c_puct = {c_puct!r} is invalid: it must be >= 0")
    if not prior_temperature > 0:
        raise ValueError(f"prior_temperature = {prior_temperature!r} is invalid: it must be > 0 (1: the policy's)")
    if leaf_value not in LEAF_VALUES:
        raise ValueError(f"leaf_value = {leaf_value!r} is invalid: it must be one of {LEAF_VALUES}")


def _robust_leaf(tree: StepTree, visits: list[list[int]], values: dict) -> Leaf | None:
    """The most visited first step, then its most visited evaluated leaf (ties: the higher value, then order)."""
    if not values:
        return None
    i = max(sorted({k[0] for k in values}), key=lambda a: sum(visits[a]))
    j = max(sorted(k[1] for k in values if k[0] == i), key=lambda b: (visits[i][b], values[(i, b)]))
    return tree.tries[i][j]


def mcts(
    tree: StepTree,
    simulations: int,
    max_tokens: int | None = None,
    c_puct: float = 1.0,
    leaf_value: str = "verifier",
    seed: int = 0,
    prior_temperature: float = 1.0,
    solver: bool = False,
) -> Outcome:
    """Monte Carlo tree search with PUCT selection (Rosin 2011; Silver et al. 2017), priors the policy's
    step probabilities normalised over siblings: UCT (Kocsis & Szepesvari 2006) guided by the policy.

    The root is expanded first (its 9 children scored). Each simulation selects a first step by PUCT,
    expands it on its first visit (its 3 tries scored), selects a try by PUCT and evaluates it:
    ``leaf_value="verifier"`` 1 if it hits the target else 0, and a hit ends the search with that answer;
    ``"policy_check"`` pi("!" | path), read once per leaf for one token. The value is backed up along the
    path. The search stops after ``simulations``, or when the next expansion or check and the answer line
    would not fit in ``max_tokens``; it answers the most visited path (:func:`_robust_leaf`).
    ``prior_temperature`` > 1 flattens the priors (pi^(1/temperature), normalised): the tries' order in the
    chain's grammar makes the policy's own step probabilities very peaked. ``solver=True`` (with the
    verifier; MCTS-Solver, Winands et al. 2008): a leaf the verifier has marked a miss is proven and never
    selected again, nor a first step whose three tries are all proven misses, so no simulation is spent
    re-visiting what is known."""
    _check_mcts_args(simulations, max_tokens, c_puct, leaf_value, prior_temperature, solver)
    rng = random.Random(seed)
    prior1 = _softmax([s.logprob for s in tree.firsts], prior_temperature)  # (9,)
    prior2 = [_softmax([leaf.logprob for leaf in group], prior_temperature) for group in tree.tries]  # (9, 3)
    visits, totals = [[0] * 3 for _ in range(9)], [[0.0] * 3 for _ in range(9)]  # (9, 3) N(s, a), W(s, a)
    values, expanded, spent = {}, set(), sum(s.tokens for s in tree.firsts)
    if not _fits(0, spent, max_tokens):
        return _outcome(tree, None, 0)
    for _ in range(simulations):
        open_tries = [[b for b in range(3) if not (solver and (a, b) in values)] for a in range(9)]  # (9, <=3)
        open_firsts = [a for a in range(9) if open_tries[a]]
        if not open_firsts:  # the solver has proven every leaf a miss
            break
        i = _puct_pick(prior1, [sum(v) for v in visits], [sum(w) for w in totals], c_puct, rng, open_firsts)
        cost = 0 if i in expanded else sum(leaf.tokens for leaf in tree.tries[i])
        j = _puct_pick(prior2[i], visits[i], totals[i], c_puct, rng, open_tries[i])
        cost += 1 if leaf_value == "policy_check" and (i, j) not in values else 0
        if not _fits(spent, cost, max_tokens):
            break
        spent += cost
        expanded.add(i)
        leaf = tree.tries[i][j]
        if (i, j) not in values:
            hit = leaf.value == tree.problem.target
            values[(i, j)] = float(hit) if leaf_value == "verifier" else math.exp(leaf.hit_logprob)
        visits[i][j] += 1
        totals[i][j] += values[(i, j)]
        if leaf_value == "verifier" and values[(i, j)] == 1.0:
            return _outcome(tree, leaf, spent)
    return _outcome(tree, _robust_leaf(tree, visits, values), spent)
