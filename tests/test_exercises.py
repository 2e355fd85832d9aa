import re

import pytest

from kimi_mini.exercises import check_verifier, verifier_cases
from kimi_mini.tasks import Problem, verify


def test_check_accepts_the_package_verifier():
    assert check_verifier(lambda numbers, target, response: verify(Problem(numbers, target), response)).startswith(
        "All "
    )


def test_cases_contain_both_rewards():
    rewards = [verify(p, r) for p, r in verifier_cases()]
    assert 0.3 < sum(rewards) / len(rewards) < 0.8


def _first_answer(numbers, target, response):
    if not isinstance(response, str):
        return 0
    m = re.search(r"answer \((\d)([-+*])(\d)\)([-+*])(\d)", response)  # the FIRST answer: wrong
    return verify(Problem(numbers, target), m.group(0)) if m else 0


def _value_only(numbers, target, response):
    if not isinstance(response, str):
        return 0
    m = re.findall(r"answer (\(\d[-+*]\d\)[-+*]\d)", response)
    return int(bool(m) and eval(m[-1]) == target)  # ignores which numbers were used: hackable


def _raises_on_garbage(numbers, target, response):
    return verify(Problem(numbers, target), response.strip())  # .strip() raises on None


def _any_line_prefix(numbers, target, response):  # the verifier before it read whole lines: foolable
    if not isinstance(response, str):
        return 0
    found = re.findall(r"answer \((\d)([-+*])(\d)\)([-+*])(\d)", response)
    return verify(Problem(numbers, target), "answer ({}{}{}){}{}".format(*found[-1])) if found else 0


ANSWER = re.compile(r"answer \(([0-9])([-+*])([0-9])\)([-+*])([0-9])")


def _apply(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


def _chapter_solution(numbers, target, response):
    """The solution chapter 1 shows for its verifier exercise."""
    if not isinstance(response, str):
        return 0
    lines = [line.strip(" \t\r") for line in response.split("\n")]
    answers = [line for line in lines if line.startswith("answer")]
    if not answers:
        return 0
    found = ANSWER.fullmatch(answers[-1])  # the whole line, ASCII digits only
    if found is None:
        return 0
    x, op1, y, op2, z = found.groups()
    if sorted(map(int, (x, y, z))) != sorted(numbers):
        return 0
    return int(_apply(_apply(int(x), op1, int(y)), op2, int(z)) == target)


def test_check_accepts_the_chapter_solution():
    assert check_verifier(_chapter_solution) == f"All {len(verifier_cases())} checks passed."


@pytest.mark.parametrize("wrong", [_first_answer, _value_only, _raises_on_garbage, _any_line_prefix, lambda n, t, r: 0])
def test_check_rejects_wrong_verifiers(wrong):
    with pytest.raises(AssertionError):
        check_verifier(wrong)


def _chain_rule(policy, tokenizer, prompt, response_ids):
    import torch

    ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    total = 0.0
    with torch.no_grad():
        for token in response_ids:
            total += torch.log_softmax(policy(ids).logits[0, -1], -1)[token].item()
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return total


def test_sequence_logprob_check(tiny_policy, tokenizer):
    from kimi_mini.exercises import check_sequence_logprob

    policy = tiny_policy.eval()
    assert check_sequence_logprob(_chain_rule, policy, tokenizer, n=3).startswith("All 3")
    with pytest.raises(AssertionError):  # forgets the last token (the end-of-sequence)
        check_sequence_logprob(lambda m, t, p, ids: _chain_rule(m, t, p, ids[:-1]), policy, tokenizer, n=3)
    with pytest.raises(AssertionError):  # an average, not a sum
        check_sequence_logprob(lambda m, t, p, ids: _chain_rule(m, t, p, ids) / len(ids), policy, tokenizer, n=3)


def _loop_penalty(lengths, correct, k, batch_wide=False, wrong_gets_lambda=False):
    out = []
    for start in range(0, len(lengths), k):
        group = lengths if batch_wide else lengths[start : start + k]
        lo, hi = min(group), max(group)
        for length, right in zip(lengths[start : start + k], correct[start : start + k]):
            lam = 0.0 if hi == lo else 0.5 - (length - lo) / (hi - lo)
            out.append(lam if right or wrong_gets_lambda else min(0.0, lam))
    return out


def test_length_penalty_check():
    from kimi_mini.exercises import check_length_penalty

    assert check_length_penalty(_loop_penalty).startswith("All 200")
    with pytest.raises(AssertionError):  # open-r1's batch-wide min and max
        check_length_penalty(lambda x, c, k: _loop_penalty(x, c, k, batch_wide=True))
    with pytest.raises(AssertionError):  # a wrong answer rewarded for being short
        check_length_penalty(lambda x, c, k: _loop_penalty(x, c, k, wrong_gets_lambda=True))


def test_prioritized_weights_check():
    from kimi_mini.exercises import check_prioritized_weights

    def right(successes, attempts, active):
        return [(1 - s / a if a else 1.0) if on else 0.0 for s, a, on in zip(successes, attempts, active)]

    assert check_prioritized_weights(right).startswith("All 200")
    with pytest.raises(AssertionError):  # a problem never drawn counted as solved
        check_prioritized_weights(lambda s, a, on: [x if a_ else 0.0 for x, a_ in zip(right(s, a, on), a)])
    with pytest.raises(AssertionError):  # the filter ignored
        check_prioritized_weights(lambda s, a, on: right(s, a, [True] * len(on)))


def test_overlong_reward_check():
    from kimi_mini.exercises import check_overlong_reward

    def right(max_len, buffer):
        def reward(completion_ids, **kwargs):
            return [min(0.0, max(-1.0, (max_len - buffer - len(ids)) / buffer)) for ids in completion_ids]

        return reward

    def characters(max_len, buffer):  # counts the text, not the tokens
        def reward(completions, **kwargs):
            return [min(0.0, max(-1.0, (max_len - buffer - len(c)) / buffer)) for c in completions]

        return reward

    def no_floor(max_len, buffer):  # forgets that the punishment stops at -1
        def reward(completion_ids, **kwargs):
            return [min(0.0, (max_len - buffer - len(ids)) / buffer) for ids in completion_ids]

        return reward

    assert check_overlong_reward(right).startswith("All 100")
    for wrong in (characters, no_floor):
        with pytest.raises(AssertionError):
            check_overlong_reward(wrong)


def test_ppo_clip_exercise_check_accepts_the_package_and_rejects_near_misses():
    import torch

    from kimi_mini.exercises import check_ppo_clip
    from kimi_mini.losses import ppo_clip_loss

    assert check_ppo_clip(ppo_clip_loss).startswith("All ")

    def unclipped(logprobs, old, advantage, clip_eps):
        return -advantage * torch.exp(logprobs - old)

    def min_instead_of_max(logprobs, old, advantage, clip_eps):
        ratio = torch.exp(logprobs - old)
        return torch.min(-advantage * ratio, -advantage * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))

    for wrong in (unclipped, min_instead_of_max):
        with pytest.raises(AssertionError):
            check_ppo_clip(wrong)


def test_judge_target_check_accepts_the_package_and_rejects_near_misses():
    from kimi_mini.exercises import check_judge_target
    from kimi_mini.reward_models import check_text

    def right(numbers, target, response):
        return check_text(Problem(numbers, target), response)

    def value_only(numbers, target, response):  # forgets to compare the digits used
        text = right(numbers, target, response)
        head, _, _ = text.rpartition("=> ")
        value_ok = head and head.split(",")[0].split(" vs ")[0].split("=")[-1] == str(target)
        return head + ("=> !" if value_ok else "=> .") if head else text

    def unsorted(numbers, target, response):  # the problem's digits in their order
        text = right(numbers, target, response)
        need = "".join(sorted("".join(map(str, numbers))))
        return text.replace(f"vs {need} =>", f"vs {''.join(map(str, numbers))} =>")

    assert check_judge_target(right).startswith("All ")
    for wrong in (value_only, unsorted):
        with pytest.raises(AssertionError):
            check_judge_target(wrong)


def test_mode_split_check():
    import numpy as np

    from kimi_mini.exercises import _mode_split_reference, check_mode_split

    assert check_mode_split(_mode_split_reference).startswith("All 100")

    # the classic mistake: weight the accuracy change by the shares before RL, not after
    def before_weights(sb, cb, sa, ca):
        sb, cb, sa, ca = (np.asarray(x) for x in (sb, cb, sa, ca))
        s, g = sb == 1, sb == 0
        mode = (sa.mean() - s.mean()) * cb[s].mean() + ((1 - sa).mean() - g.mean()) * cb[g].mean()
        acc_s, acc_g = ca[sa == 1].mean(), ca[sa == 0].mean() if (sa == 0).any() else 0.0
        return mode, s.mean() * (acc_s - cb[s].mean()) + g.mean() * (acc_g - cb[g].mean())

    assert check_mode_split(before_weights).startswith("Case")
    # half right searches and half wrong guesses -> all right searches: the whole gain is mode shift
    searched = [1, 1, 0, 0] * 5
    mode, within = _mode_split_reference(searched, searched, [1] * 20, [1] * 20)
    assert abs(mode - 0.5) < 1e-12 and abs(within) < 1e-12


def test_image_merge_check():
    import torch

    from kimi_mini.exercises import _image_merge_reference, check_image_merge

    assert check_image_merge(_image_merge_reference).startswith("All 50")

    def by_row_index(embeds, input_ids, features, image_id):  # image b for row b: wrong once a text row comes first
        out = embeds.clone()
        for b in range(min(len(features), len(out))):
            where = input_ids[b] == image_id
            if where.any():
                out[b, where] = features[b]
        return out

    def in_place(embeds, input_ids, features, image_id):
        embeds[input_ids == image_id] = features.reshape(-1, features.shape[-1])
        return embeds

    for wrong in (by_row_index, in_place):
        with pytest.raises(AssertionError):
            check_image_merge(wrong)
    assert torch.is_tensor(_image_merge_reference(torch.zeros(1, 9, 2), torch.full((1, 9), 7), torch.ones(1, 9, 2), 7))
