"""Checks for the book's coding exercises: call one with your function; it passes or shows a counterexample.

Introduced in {ref}`ch1-exercises`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .tasks import Problem, guess_trace, make_problems, search_trace, verify

__all__ = [
    "verifier_cases",
    "check_verifier",
    "check_sequence_logprob",
    "check_kl_optimum",
    "check_ppo_clip",
    "check_omd_loss",
    "check_find_repeat",
    "check_mode_split",
    "check_length_penalty",
    "check_prioritized_weights",
    "check_overlong_reward",
    "check_judge_target",
    "check_image_merge",
]


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
        "answer (4*3)+5!!",  # text after the expression: the line is not an answer
        "answer (45*3)+5",  # a two-digit number
        "answer (4*3)+55",  # a digit appended: 67, not 17 (an older verifier read (4*3)+5)
        "answer (4*3)+5*0",  # an operation appended
        "answer (4*3)+5.5",  # a decimal appended
        "answer (4*3)+5e3",  # an exponent appended
        "answer (\u0664*\u0663)+\u0665",  # Arabic-Indic digits: only 0-9 count
        "answer (\uff14*\uff13)+\uff15",  # full-width digits
        "so the answer (4*3)+5",  # not on a line of its own
        "answer (4*3)+5\nanswer",  # the last answer line is unfinished
        "4*3=12: 12+5=17 vs 17!\n  answer (4*3)+5 \r\n",  # spaces and a line break around the line
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

    That is 1 when the *last* line of the response that starts with ``answer`` is exactly
    ``answer (x op y) op z`` (ASCII digits, nothing after the expression; spaces around the line are
    allowed), uses the problem's numbers once each and reaches the target, else 0, and it must never
    raise. Raises ``AssertionError`` on the first case where ``fn`` disagrees or raises.
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


def check_ppo_clip(fn: Callable, n: int = 100, seed: int = 0) -> str:
    """Preliminaries: ``fn(logprobs, old_logprobs, advantage, clip_eps)`` must return PPO's per-token loss.

    That is -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) with ratio = exp(logprobs - old_logprobs), shape
    (B, T). Compares value and gradient with :func:`kimi_mini.losses.ppo_clip_loss` to 1e-9 (float64) on
    random batches with ratios inside and outside the clip range, advantages of both signs and several eps.
    """
    import torch

    from .losses import ppo_clip_loss

    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        batch, steps = 1 + i % 4, 1 + i % 6
        old = -torch.rand(batch, steps, generator=gen, dtype=torch.float64) * 3  # (B, T) log-probs
        new = (old + 0.5 * torch.randn(batch, steps, generator=gen, dtype=torch.float64)).requires_grad_()
        advantage = torch.randn(batch, 1, generator=gen, dtype=torch.float64)  # (B, 1): one per sequence
        clip_eps = [0.1, 0.2, 0.3][i % 3]
        expected = ppo_clip_loss(new, old, advantage, clip_eps)
        got = fn(new, old, advantage, clip_eps)
        assert torch.is_tensor(got) and got.shape == expected.shape, (
            f"fn must return a (B, T) = {tuple(expected.shape)} tensor, got {got!r}"
        )
        (expected_grad,) = torch.autograd.grad(expected.sum(), new)
        (got_grad,) = torch.autograd.grad(got.sum(), new)
        ratios = torch.exp(new - old).detach().flatten().round(decimals=3).tolist()
        where = f"clip_eps {clip_eps}, ratios {ratios}, A {advantage.flatten().round(decimals=3).tolist()}"
        assert torch.allclose(got.detach(), expected.detach(), atol=1e-9), f"{where}: the losses differ"
        assert torch.allclose(got_grad, expected_grad, atol=1e-9), f"{where}: the gradients differ"
    return f"All {n} checks passed."


def check_omd_loss(fn: Callable, n: int = 100, seed: int = 0) -> str:
    """Chapter 4: ``fn(logprobs, old_logprobs, mask, rewards, group_size, tau)`` must return the k1.5 loss.

    Compares value and gradient (with respect to ``logprobs``) with :func:`kimi_mini.losses.omd_loss` to
    1e-5 on random batches: several group sizes, groups with equal rewards, padded rows, varied tau.
    """
    import torch

    from .losses import omd_loss

    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        group_size, groups, steps = 1 + i % 4, 1 + i % 3, 2 + i % 5
        batch = group_size * groups
        old = -torch.rand(batch, steps, generator=gen, dtype=torch.float64) * 3  # (B, T) log-probs
        new = (old + 0.3 * torch.randn(batch, steps, generator=gen, dtype=torch.float64)).requires_grad_()
        lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
        mask = (torch.arange(steps) < lengths[:, None]).double()  # (B, T), padding on the right
        rewards = torch.randint(0, 2, (batch,), generator=gen).double()
        if i % 7 == 0:
            rewards[:group_size] = 1.0  # a group where every sample is right
        tau = [0.1, 0.5, 1.0, 4.0][i % 4]
        expected = omd_loss(new, old, mask, rewards, group_size, tau)
        (expected_grad,) = torch.autograd.grad(expected, new)
        got = fn(new, old, mask, rewards, group_size, tau)
        assert torch.is_tensor(got) and got.dim() == 0, f"fn must return a scalar tensor, got {got!r}"
        (got_grad,) = torch.autograd.grad(got, new)
        where = f"group_size {group_size}, tau {tau}, rewards {rewards.tolist()}"
        got_value, expected_value = float(got.detach()), float(expected.detach())
        assert abs(got_value - expected_value) < 1e-5, f"{where}: loss {got_value:.6f}, expected {expected_value:.6f}"
        assert torch.allclose(got_grad, expected_grad, atol=1e-5), f"{where}: the gradients differ"
    return f"All {n} checks passed."


def check_find_repeat(fn: Callable, n: int = 300, seed: int = 0) -> str:
    """Chapter 6: ``fn(ids, start, block, times)`` must return what :func:`kimi_mini.partial.find_repeat`
    returns: the first end position after ``start`` where a block of 2..``block`` tokens repeats ``times``
    times in a row, or None. Random token lists with planted repeats, near misses and varied ``start``."""
    from .partial import find_repeat

    rng = random.Random(seed)
    for i in range(n):
        ids = [rng.randrange(4 if i % 2 else 30) for _ in range(rng.randrange(0, 40))]
        if i % 3 == 0:  # plant a repeat (sometimes one copy short)
            unit = [rng.randrange(30) for _ in range(rng.randrange(2, 6))]
            at = rng.randrange(len(ids) + 1)
            ids[at:at] = unit * rng.choice([2, 3, 4])
        block, times = rng.randrange(2, 7), rng.randrange(2, 5)
        start = rng.randrange(0, len(ids) + 1)
        expected = find_repeat(ids, start, block, times)
        got = fn(list(ids), start, block, times)
        assert got == expected, (
            f"fn({ids}, start={start}, block={block}, times={times}) returned {got}, expected {expected}"
        )
    return f"All {n} checks passed."


def _mode_split_reference(searched_before, correct_before, searched_after, correct_after) -> tuple[float, float]:
    import numpy as np

    sb, cb = np.asarray(searched_before, bool), np.asarray(correct_before, float)
    sa, ca = np.asarray(searched_after, bool), np.asarray(correct_after, float)
    mode, within = 0.0, 0.0
    for before_rows, after_rows in ((sb, sa), (~sb, ~sa)):
        share_before, share_after = before_rows.mean(), after_rows.mean()
        acc_before, acc_after = cb[before_rows].mean(), ca[after_rows].mean() if after_rows.any() else 0.0
        mode += (share_after - share_before) * acc_before
        within += share_after * (acc_after - acc_before)
    return float(mode), float(within)


def check_mode_split(fn: Callable, n: int = 100, seed: int = 0) -> str:
    """Chapter 5: ``fn(searched_before, correct_before, searched_after, correct_after)`` (0/1 per response,
    before and after RL) must return ``(mode_shift, within_mode)``: with p_m the share of responses in mode m
    (search or not) and a_m its accuracy, ``mode_shift = sum_m (p'_m - p_m) a_m`` and
    ``within_mode = sum_m p'_m (a'_m - a_m)``, which add up to the change in accuracy. Both modes occur
    before RL in every case; after RL one may be gone. Compared to 1e-9 on random cases."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for i in range(n):
        m = int(rng.integers(20, 400))
        sb = rng.random(m) < rng.uniform(0.2, 0.8)
        sb[:2] = (True, False)
        cb = rng.random(m) < np.where(sb, 0.9, 0.15)
        sa = rng.random(m) < (1.0 if i % 10 == 0 else rng.uniform(0.3, 1.0))
        ca = rng.random(m) < np.where(sa, 0.95, 0.2)
        args = [x.astype(int).tolist() for x in (sb, cb, sa, ca)]
        expected = _mode_split_reference(*args)
        got = tuple(float(v) for v in fn(*args))
        if not np.allclose(got, expected, atol=1e-9, rtol=0):
            return f"Case {i}: expected (mode_shift, within_mode) = {expected}, got {got}."
        total = float(np.mean(ca) - np.mean(cb))
        assert abs(sum(expected) - total) < 1e-9  # the two terms add up to the change in accuracy
    return f"All {n} cases match: the two terms add up to the change in accuracy."


def check_length_penalty(fn: Callable, n: int = 200, seed: int = 0) -> str:
    """Chapter 7: ``fn(lengths, correct, group_size)`` (lists) must return k1.5's per-group length reward,
    what :func:`kimi_mini.rewards.length_penalty` returns, to 1e-6. Random batches, including groups of
    equal lengths, groups of one, all-wrong groups, and batch-wide min/max mistakes that these catch."""
    import torch

    from .rewards import length_penalty

    rng = random.Random(seed)
    for i in range(n):
        k, groups = rng.randrange(1, 9), rng.randrange(1, 5)
        lengths = [rng.randrange(1, 60) for _ in range(k * groups)]
        if i % 7 == 0:  # one group with all lengths equal
            lengths[:k] = [lengths[0]] * k
        correct = [int(rng.random() < (0.0 if i % 11 == 0 else 0.6)) for _ in lengths]
        expected = length_penalty(torch.tensor(lengths), torch.tensor(correct), k).tolist()
        got = [float(v) for v in fn(list(lengths), list(correct), k)]
        assert len(got) == len(expected) and all(abs(a - b) < 1e-6 for a, b in zip(got, expected)), (
            f"fn({lengths}, {correct}, group_size={k}) returned {got}, expected {expected}"
        )
    return f"All {n} checks passed."


def check_prioritized_weights(fn: Callable, n: int = 200, seed: int = 0) -> str:
    """Chapter 8: ``fn(successes, attempts, active)`` (lists) must return the prioritized sampler's
    unnormalised weights, what :func:`kimi_mini.sampling.sampling_weights` gives: 1 - s_i for active
    problems, s_i = successes / attempts (0 for a problem never drawn), and 0 for inactive ones."""
    import torch

    from .sampling import ProblemPool, sampling_weights

    rng = random.Random(seed)
    for _ in range(n):
        size = rng.randrange(1, 12)
        attempts = [rng.choice([0, 8, 16, 24]) for _ in range(size)]
        successes = [rng.randrange(a + 1) for a in attempts]
        active = [rng.random() < 0.8 for _ in range(size)]
        pool = ProblemPool([Problem((1, 1, 1), 2)] * size, list(successes), list(attempts), list(active))
        expected = sampling_weights(pool, "prioritized", 0, 0)
        got = torch.tensor([float(v) for v in fn(list(successes), list(attempts), list(active))], dtype=torch.float64)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-9), (
            f"fn({successes}, {attempts}, {active}) returned {got.tolist()}, expected {expected.tolist()}"
        )
    return f"All {n} checks passed."


def check_overlong_reward(make_reward: Callable, n: int = 100, seed: int = 0) -> str:
    """Chapter 9: ``make_reward(max_len, buffer)`` must return a TRL ``GRPOTrainer`` reward function,
    called as ``fn(prompts=..., completions=..., completion_ids=..., **kwargs)``, that gives DAPO's soft
    overlong punishment (:func:`kimi_mini.rewards.overlong_punishment`) of each completion's length in
    *tokens*. The completions' texts are longer than their token lists, so counting characters fails."""
    import torch

    from .rewards import overlong_punishment

    rng = random.Random(seed)
    for _ in range(n):
        max_len = rng.randrange(8, 200)
        buffer = rng.randrange(1, max_len + 1)
        lengths = [rng.randrange(1, max_len + 20) for _ in range(rng.randrange(1, 9))]
        ids = [[7] * length for length in lengths]
        texts = ["ab" * length for length in lengths]  # two characters per token
        fn = make_reward(max_len, buffer)
        got = [
            float(v) for v in fn(prompts=["p"] * len(ids), completions=texts, completion_ids=ids, trainer_state=None)
        ]
        expected = overlong_punishment(torch.tensor(lengths), max_len, buffer).tolist()
        assert len(got) == len(expected) and all(abs(a - b) < 1e-6 for a, b in zip(got, expected)), (
            f"make_reward({max_len}, {buffer}) on lengths {lengths} returned {got}, expected {expected}"
        )
    return f"All {n} checks passed."


def check_judge_target(fn: Callable[[tuple[int, int, int], int, str], str]) -> str:
    """Chapter 10: ``fn(numbers, target, response)`` must return the chain-of-thought judge's training target,
    :func:`kimi_mini.reward_models.check_text` (the answer line recomputed in the trace format, the digits
    used against the problem's, then ``=> !`` or ``=> .``), on the tricky responses of
    :func:`verifier_cases` and on traces and guesses of random problems."""
    from .reward_models import check_text

    cases = [(p, r) for p, r in verifier_cases(100) if isinstance(r, str)]
    for problem, response in cases:
        expected, got = check_text(problem, response), fn(problem.numbers, problem.target, response)
        assert got == expected, (
            f"for {problem.numbers} -> {problem.target} and the response {response!r}: got {got!r}, "
            f"expected {expected!r}"
        )
    return f"All {len(cases)} checks passed."


def _image_merge_reference(embeds, input_ids, features, image_id):
    """LLaVA's merge: the image features, in order, take the places of the image tokens, row by row."""
    mask = (input_ids == image_id).unsqueeze(-1).expand_as(embeds)  # (B, T, D)
    return embeds.masked_scatter(mask, features.reshape(-1, features.shape[-1]).to(embeds.dtype))


def check_image_merge(fn: Callable, n: int = 50, seed: int = 0) -> str:
    """Chapter 11: ``fn(embeds, input_ids, features, image_id)`` must return ``embeds`` (B, T, D) with the
    image tokens' vectors replaced by ``features`` (n_images, 9, D): image i fills the 9 image tokens of the
    i-th row that has any, in order; text rows (no image token) and every other position keep their
    vectors. Batches mix text and image rows, with the image tokens at different places in each row (as
    left padding puts them); ``embeds`` must not change."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    for _ in range(n):
        B, D, image_id = rng.randrange(1, 6), rng.randrange(2, 9), 7
        rows = [rng.random() < 0.6 for _ in range(B)]  # which rows show an image
        T = 9 + rng.randrange(2, 6)
        input_ids = torch.randint(0, image_id, (B, T), generator=gen)  # (B, T) text tokens
        for b, has in enumerate(rows):
            if has:
                start = rng.randrange(0, T - 9 + 1)
                input_ids[b, start : start + 9] = image_id
        embeds = torch.randn(B, T, D, generator=gen)  # (B, T, D)
        features = torch.randn(sum(rows), 9, D, generator=gen)  # (n_images, 9, D)
        before = embeds.clone()
        got = fn(embeds, input_ids, features, image_id)
        expected = _image_merge_reference(before, input_ids, features, image_id)
        assert torch.equal(embeds, before), "fn changed embeds in place: return a new tensor"
        assert got.shape == expected.shape and torch.allclose(got, expected), (
            f"rows with an image {rows}: the merged vectors differ from the expected ones at "
            f"{(got != expected).any(-1).nonzero().tolist()[:6]} (row, position)"
        )
    return f"All {n} checks passed."
