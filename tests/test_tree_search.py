import importlib.util
import random
import re
from pathlib import Path

import pytest
import torch

from kimi_mini.long2short import load_long_policy
from kimi_mini.tasks import Problem, all_expressions, make_problems, prompt_text, search_trace
from kimi_mini.tree_search import (
    ANSWER_TOKENS,
    Outcome,
    best_first,
    mcts,
    path_logprobs,
    score_trees,
    tree_from_scores,
    tree_steps,
)

FIRST_RE = re.compile(r"([0-9])([-+*])([0-9])=(-?[0-9]+): ")
TRY_RE = re.compile(r"(-?[0-9]+)([-+*])([0-9])=(-?[0-9]+) vs ([0-9]+)")
PROBLEMS = make_problems(200, seed=7)


def random_tree(problem: Problem, seed: int, scale: float = 3.0):
    """A tree with random log-probs (the searches need nothing else)."""
    g = torch.Generator().manual_seed(seed)
    first, tries, hits = (-scale * torch.rand(shape, generator=g) for shape in ((9,), (9, 3), (9, 3)))
    return tree_from_scores(problem, first, tries, hits)


def test_step_texts_follow_the_chain_grammar_and_span_the_search_space():
    for problem in PROBLEMS:
        steps = tree_steps(problem)
        assert len(steps) == 9 and all(len(leaves) == 3 for _, leaves in steps)
        assert [(e, v) for _, leaves in steps for _, e, v in leaves] == all_expressions(problem.numbers)  # 27 leaves
        for first, leaves in steps:
            x, op1, y, p = FIRST_RE.fullmatch(first).groups()
            for text, expression, value in leaves:
                q, op2, z, v, t = TRY_RE.fullmatch(text).groups()
                assert (q, v, t) == (p, str(value), str(problem.target))
                assert expression == f"({x}{op1}{y}){op2}{z}"
        # every line of a warm-up search trace is a first step followed by its tries, in the same words
        children = {first: {text for text, _, _ in leaves} for first, leaves in steps}
        for line in search_trace(problem, random.Random(0)).split("\n")[:-1]:
            first, tries = line[: line.index(": ") + 2], line[line.index(": ") + 2 :].rstrip(".!").split(", ")
            assert first in children and set(tries) <= children[first]


def test_step_scores_are_the_teacher_forced_token_logprobs(tiny_policy, tokenizer):
    prompt, path = "4 2 1 -> 6\n", ["4+2=6: ", "6*1=6 vs 6"]
    steps, tokens, hit = path_logprobs(tiny_policy, tokenizer, [prompt], [path])
    ids = tokenizer(prompt + "".join(path), return_tensors="pt")["input_ids"]  # (1, T): <bos> and one per char
    with torch.no_grad():
        logp = torch.log_softmax(tiny_policy(input_ids=ids).logits[0].double(), dim=-1)  # (T, V)
    token_lp = logp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)  # (T-1,): position t predicts t+1
    P = 1 + len(prompt)  # <bos> + prompt characters
    assert tokens.tolist() == [[7, 10]]
    assert steps[0, 0].item() == pytest.approx(token_lp[P - 1 : P + 6].sum().item(), abs=1e-4)
    assert steps[0, 1].item() == pytest.approx(token_lp[P + 6 :].sum().item(), abs=1e-4)
    assert hit.item() == pytest.approx(logp[-1, tokenizer.convert_tokens_to_ids("!")].item(), abs=1e-5)


def test_a_branch_score_does_not_depend_on_its_siblings(tiny_policy, tokenizer):
    problems = make_problems(4, seed=3)
    alone = score_trees(tiny_policy, tokenizer, problems[2:3])[0]
    together = score_trees(tiny_policy, tokenizer, problems)[2]  # with 26 siblings and 3 other problems' trees
    for a, b in zip(alone.firsts, together.firsts):
        assert (a.text, a.tokens) == (b.text, b.tokens) and a.logprob == pytest.approx(b.logprob, abs=1e-4)
    for group_a, group_b in zip(alone.tries, together.tries):
        for a, b in zip(group_a, group_b):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
            assert a.hit_logprob == pytest.approx(b.hit_logprob, abs=1e-4)
    first, leaf = together.firsts[5], together.tries[5][1]  # one path scored on its own
    steps, _, hit = path_logprobs(tiny_policy, tokenizer, [prompt_text(problems[2])], [[first.text, leaf.text]])
    assert steps[0].tolist() == pytest.approx([first.logprob, leaf.logprob], abs=1e-4)


def test_best_first_with_the_verifier_solves_every_problem_when_the_whole_tree_fits():
    trees = [random_tree(p, seed) for seed, p in enumerate(PROBLEMS)]
    policy, tokenizer = load_long_policy()
    trees += score_trees(policy, tokenizer, make_problems(16, seed=11))
    for tree in trees:
        whole = sum(s.tokens for s in tree.firsts) + sum(leaf.tokens for g in tree.tries for leaf in g)
        for budget in (None, whole + ANSWER_TOKENS):
            outcome = best_first(tree, budget, leaf_check=True)
            assert outcome.correct == 1 and outcome.tokens <= whole + ANSWER_TOKENS


def test_tokens_count_every_scored_step_once_and_the_answer_line():
    """4 2 1 -> 6: nine 7-character first steps (63), three 10-character tries per expanded step (30)."""
    problem = Problem((4, 2, 1), 6)
    assert ANSWER_TOKENS == len("\nanswer (4+2)*1") + 1 == 16  # newline, answer, end-of-sequence
    first = [-1.0, -3.0, -2.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0]  # 4+2 first, then 4*2 (8: no hit), then 4-2
    tries = [[-1.0, -2.0, -3.0]] * 9  # under 4+2=6 the hit 6*1=6 is the least likely try
    hits = [[-1.0, -1.0, -1.0]] * 9
    tree = tree_from_scores(problem, first, tries, hits)
    assert best_first(tree) == best_first(tree, 109) == Outcome("(4+2)*1", 1, 63 + 30 + 16)
    first[0], first[2] = -2.0, -1.0  # 4*2=8 expanded first: 8+1, 8-1, 8*1 miss
    tree = tree_from_scores(problem, first, tries, hits)
    assert best_first(tree).tokens == 63 + 30 + 30 + 16
    assert best_first(tree, 63 + 30 + 16) == Outcome("(4*2)+1", 0, 63 + 30 + 16)  # budget: most likely leaf seen
    assert best_first(tree, 63 + 16) == Outcome(None, 0, 63)  # the root only: no leaf to answer
    assert best_first(tree, 63 + 15) == Outcome(None, 0, 0)  # not even the root fits
    # no verifier: the leaf (4*2)+1 (-1 - 1) is popped before the node 4+2 (-2): the most likely leaf
    assert best_first(tree, leaf_check=False) == Outcome("(4*2)+1", 0, 63 + 30 + 16)
    # MCTS, policy check: root 63, the three tries of 4*2 (30), one token per leaf checked, the answer
    assert mcts(tree, 1, leaf_value="policy_check").tokens == 63 + 30 + 1 + 16
    assert mcts(tree, 1, leaf_value="verifier").tokens == 63 + 30 + 16


def test_best_first_without_a_verifier_answers_the_most_likely_leaf():
    for seed, problem in enumerate(PROBLEMS[:50]):
        tree = random_tree(problem, seed)
        leaves = [(s.logprob + leaf.logprob, leaf.expression) for s, g in zip(tree.firsts, tree.tries) for leaf in g]
        best = max(score for score, _ in leaves)
        assert (best, best_first(tree, leaf_check=False).answer) in leaves


def test_mcts_is_deterministic_for_a_seed_and_explores_with_flat_priors():
    trees = [random_tree(p, seed, scale=0.0) for seed, p in enumerate(PROBLEMS[:40])]  # uniform priors
    for value in ("verifier", "policy_check"):
        runs = [[mcts(t, 300, leaf_value=value, seed=s) for t in trees] for s in (0, 0, 1)]
        assert runs[0] == runs[1]
    assert all(mcts(t, 300, leaf_value="verifier", c_puct=2.0).correct == 1 for t in trees)


def test_bad_arguments_raise_value_errors_naming_them(tiny_policy, tokenizer):
    tree = random_tree(PROBLEMS[0], 0)
    cases = [
        (lambda: best_first(tree, 0), "max_tokens"),
        (lambda: best_first(tree, leaf_check="yes"), "leaf_check"),
        (lambda: mcts(tree, 0), "simulations"),
        (lambda: mcts(tree, 10, max_tokens=-5), "max_tokens"),
        (lambda: mcts(tree, 10, c_puct=-1.0), "c_puct"),
        (lambda: mcts(tree, 10, leaf_value="oracle"), "leaf_value"),
        (lambda: mcts(tree, 10, prior_temperature=0.0), "prior_temperature"),
        (lambda: tree_from_scores(PROBLEMS[0], [0.0] * 9, [[0.0] * 3] * 8, [[0.0] * 3] * 9), "tries"),
        (lambda: score_trees(tiny_policy, tokenizer, PROBLEMS[:1], batch_problems=0), "batch_problems"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


def test_the_benchmark_runs_on_two_problems(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tree_search.py"
    spec = importlib.util.spec_from_file_location("tree_search_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["run", "--problems", "2", "--seeds", "0", "1", "--budgets", "160", "0", "--cache", str(tmp_path)]
    result = bench.main(argv)
    assert bench.main(argv) == result  # the second run reads every piece from the cache
    assert {row["method"] for row in result["rows"]} == {"chain", *bench.METHODS}
    for row in result["rows"]:
        assert len(row["correct"]) == (1 if row["deterministic"] else 2) and len(row["correct"][0]) == 2


def test_mcts_solver_never_revisits_a_proven_miss_and_solves_every_problem():
    """With the verifier and the solver, 27 simulations cover the tree: every problem is solved even with
    the policy's peaked priors, where plain PUCT keeps re-selecting the leaf its priors favour."""
    policy, tokenizer = load_long_policy()
    trees = score_trees(policy, tokenizer, make_problems(16, seed=11))
    solved = [mcts(tree, 27, leaf_value="verifier", solver=True).correct for tree in trees]
    plain = [mcts(tree, 27, leaf_value="verifier").correct for tree in trees]
    assert all(solved) and sum(plain) < len(trees)
    with pytest.raises(ValueError, match="solver"):
        mcts(trees[0], 8, leaf_value="policy_check", solver=True)
