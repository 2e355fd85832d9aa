"""Checks for the book's coding exercises: call one with your function; it passes or shows a counterexample.

Introduced in {ref}`ch1-exercises`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .tasks import Problem, guess_trace, make_problems, search_trace, verify

__all__ = ["verifier_cases", "check_verifier", "check_sequence_logprob", "check_kl_optimum"]


def verifier_cases(n_random: int = 200, seed: int = 0) -> list[tuple[Problem, object]]:
    """Tricky responses (reward hacks, truncations, garbage) plus traces and guesses of random problems."""
    p = Problem((4, 3, 5), 17)
    tricky = [
        "answer (4*3)+5",  # correct
        "answer (3*4)+5",  # correct, other order
        "answer (4*4)+1",  # right value, numbers not the problem's
        "answer (5*3)+2",  # right value, numbers not the problem's
        "answer (4*3)+4",  # a number used twice
        "answer (4+3)+5",  # wrong value
        "answer (4*3)+5\nanswer (4+3)+5",  # the last answer counts
        "answer (4+3)+5\nanswer (4*3)+5",
        "answer (4*3",  # truncated
        "answer 4*3+5",  # no parentheses: not the answer format
        "",
        "17",
        "4*3=12: 12+5=17 vs 17!",  # found it but never answered
        "answer (4*3)+5!!",  # trailing junk after a valid answer
        "answer (45*3)+5",  # a two-digit number
        "\x00answer\u2003(4*3)+5",
        None,
        b"answer (4*3)+5",
        42,
    ]
    rng = random.Random(seed)
    cases = [(p, response) for response in tricky]
    for problem in make_problems(n_random, seed):
        cases.append((problem, search_trace(problem, rng)))
        cases.append((problem, guess_trace(problem, rng)))
    return cases


def check_verifier(fn: Callable[[tuple[int, int, int], int, object], int]) -> str:
    """Chapter 1: ``fn(numbers, target, response)`` must return what :func:`kimi_mini.tasks.verify` returns.

    That is 1 when the *last* ``answer (x op y) op z`` in the response uses the problem's numbers once each
    and reaches the target, else 0, and it must never raise. Raises ``AssertionError`` on the first case
    where ``fn`` disagrees or raises.
    """
    cases = verifier_cases()
    for problem, response in cases:
        expected = verify(problem, response)
        try:
            got = fn(problem.numbers, problem.target, response)
        except Exception as err:  # the point of the exercise: a verifier must not raise
            raise AssertionError(f"fn{(problem.numbers, problem.target, response)!r} raised {err!r}") from err
        assert got == expected, (
            f"fn{(problem.numbers, problem.target, response)!r} returned {got!r}, expected {expected}"
        )
    return f"All {len(cases)} checks passed."


def check_sequence_logprob(fn: Callable, policy=None, tokenizer=None, n: int = 6) -> str:
    """Chapter 2: ``fn(policy, tokenizer, prompt, response_ids)`` must return log pi(response | prompt).

    ``response_ids`` is a list of token ids (ending with end-of-sequence when the response finished).
    Compares ``fn`` with the sum of :func:`kimi_mini.rollout.token_logprobs` on ``n`` sampled responses of
    the warm-up policy (or of ``policy``), to 1e-4.
    """
    import torch

    from .rollout import sample, token_logprobs
    from .tasks import prompt_text

    if policy is None:
        from .warmup import load_warmup_policy

        policy, tokenizer = load_warmup_policy()
    prompts = [prompt_text(p) for p in make_problems(n, seed=99)]
    rollouts = sample(policy, tokenizer, prompts, max_new_tokens=120, seed=0)
    with torch.no_grad():
        expected = token_logprobs(policy, rollouts).sum(-1)  # (B,)
    for i, prompt in enumerate(prompts):
        ids = rollouts.response_ids[i, : int(rollouts.lengths[i])].tolist()
        got = float(fn(policy, tokenizer, prompt, ids))
        assert abs(got - float(expected[i])) < 1e-4, (
            f"prompt {prompt!r}: got {got:.5f}, expected {float(expected[i]):.5f}"
        )
    return f"All {n} checks passed."


def check_kl_optimum(fn: Callable, n: int = 200, seed: int = 0) -> str:
    """Chapter 3: ``fn(pi_ref, rewards, tau)`` must return argmax_pi E_pi[r] - tau KL(pi || pi_ref).

    Compares with :func:`kimi_mini.mirror.kl_regularized_optimum` to 1e-6 on random problems, including
    large rewards over small tau (where a naive exp overflows) and zero-probability arms.
    """
    import numpy as np

    from .mirror import kl_regularized_optimum

    rng = np.random.default_rng(seed)
    for i in range(n):
        arms = int(rng.integers(2, 7))
        pi_ref = rng.dirichlet(np.ones(arms))
        if i % 5 == 0:
            pi_ref[0] = 0.0
            pi_ref /= pi_ref.sum()
        rewards = rng.normal(size=arms) * (100 if i % 3 == 0 else 1)
        tau = float(rng.choice([0.01, 0.1, 1.0, 10.0]))
        expected = kl_regularized_optimum(pi_ref, rewards, tau)
        got = np.asarray(fn(pi_ref, rewards, tau), dtype=float)
        assert got.shape == expected.shape and np.all(np.isfinite(got)), f"fn returned {got!r} for tau = {tau}"
        assert np.allclose(got, expected, atol=1e-6), (
            f"pi_ref {pi_ref.round(3)}, r {rewards.round(2)}, tau {tau}: got {got.round(4)}, expected {expected.round(4)}"
        )
    return f"All {n} checks passed."
