import pytest
import torch

from kimi_mini.config import RLConfig
from kimi_mini.rewards import batch_length_penalty, length_penalty, overlong_punishment, penalty_weight
from kimi_mini.train import length_rewards


def literal_penalty(lengths, correct, group_size):
    """Report 2.3.3 transcribed with loops, one group at a time."""
    out = []
    for start in range(0, len(lengths), group_size):
        group = lengths[start : start + group_size]
        lo, hi = min(group), max(group)
        for length, right in zip(group, correct[start : start + group_size]):
            if hi == lo:
                out.append(0.0)
                continue
            lam = 0.5 - (length - lo) / (hi - lo)
            out.append(lam if right else min(0.0, lam))
    return out


def test_a_worked_group():
    lengths = torch.tensor([10, 20, 30, 10, 20, 30])
    correct = torch.tensor([1, 1, 0, 0, 1, 1])
    got = length_penalty(lengths, correct, group_size=3)
    # correct: lambda itself (0.5 for the shortest, -0.5 for the longest); wrong: min(0, lambda)
    assert got.tolist() == [0.5, 0.0, -0.5, 0.0, 0.0, -0.5]


def test_matches_the_formula_on_random_batches():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        k = int(torch.randint(1, 9, (1,), generator=gen))
        groups = int(torch.randint(1, 6, (1,), generator=gen))
        lengths = torch.randint(1, 40, (groups * k,), generator=gen)
        correct = torch.randint(0, 2, (groups * k,), generator=gen)
        got = length_penalty(lengths, correct, k)
        want = literal_penalty(lengths.tolist(), correct.tolist(), k)
        assert torch.allclose(got, torch.tensor(want), atol=1e-6)
        assert got.min() >= -0.5 and got.max() <= 0.5


def test_equal_lengths_give_zero_and_groups_are_independent():
    assert length_penalty(torch.tensor([7, 7, 7, 7]), torch.tensor([1, 0, 1, 0]), 4).tolist() == [0.0] * 4
    lengths, correct = torch.tensor([10, 20, 100, 400]), torch.tensor([1, 1, 1, 1])
    per_group = length_penalty(lengths, correct, 2)
    assert per_group.tolist() == [0.5, -0.5, 0.5, -0.5]  # the second group's lengths do not touch the first's
    batch = batch_length_penalty(lengths, correct)
    assert batch[0] > 0.45 and batch[1] > 0.45  # batch-wide: both short answers of group 1 look "short"
    assert torch.allclose(batch, length_penalty(lengths, correct, 4))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="group_size = 3"):
        length_penalty(torch.ones(4), torch.ones(4), 3)
    with pytest.raises(ValueError, match="same shape"):
        length_penalty(torch.ones(4), torch.ones(2), 2)


def test_overlong_punishment_is_dapos_piecewise_line():
    lengths = torch.tensor([0, 300, 384, 448, 512, 600])
    got = overlong_punishment(lengths, max_len=512, buffer=128)
    assert torch.allclose(got, torch.tensor([0.0, 0.0, 0.0, -0.5, -1.0, -1.0]))
    with pytest.raises(ValueError, match="buffer = 0"):
        overlong_punishment(lengths, 512, 0)


def test_warmup_schedule_and_the_trainers_length_rewards():
    assert [penalty_weight(0.5, 3, i) for i in range(5)] == [0, 0, 0, 0.5, 0.5]
    cfg = RLConfig(group_size=2, length_penalty=0.5, length_penalty_warmup=2, max_new_tokens=100, overlong_buffer=20)
    lengths, correct = torch.tensor([10, 90, 50, 50]), torch.tensor([1.0, 1.0, 0.0, 1.0])
    assert torch.allclose(length_rewards(lengths, correct, cfg, 0), torch.tensor([0.0, -0.5, 0.0, 0.0]))
    assert torch.allclose(length_rewards(lengths, correct, cfg, 2), torch.tensor([0.25, -0.75, 0.0, 0.0]))
    with pytest.raises(ValueError, match="overlong_buffer = 200"):
        RLConfig(max_new_tokens=100, overlong_buffer=200)
