"""The shared batch layout: k contiguous rows per prompt, spelled once in kimi_mini.groups."""

import inspect
import re
from pathlib import Path

import pytest
import torch

from kimi_mini import train
from kimi_mini.groups import by_group, group_chunks, per_row


def test_layout_helpers_agree_with_row_i_answering_prompt_i_div_k():
    rows = torch.arange(12)  # (B,) row i
    assert torch.equal(by_group(rows, 4)[:, 0], torch.tensor([0, 4, 8]))  # (G, k): first row of each group
    assert per_row(["a", "b", "c"], 4) == [p for i in range(12) for p in ["abc"[i // 4]]]
    assert group_chunks(list(range(12)), 4) == [list(range(g * 4, g * 4 + 4)) for g in range(3)]
    assert by_group(torch.zeros(6, 5), 3).shape == (2, 3, 5)


def test_layout_helpers_reject_partial_groups():
    with pytest.raises(ValueError, match="group_size = 4 is invalid: it must divide the batch of 10 rows"):
        by_group(torch.zeros(10), 4)
    with pytest.raises(ValueError, match="must divide"):
        group_chunks([1, 2, 3], 2)


def test_no_module_spells_the_layout_by_hand():
    # view(-1, k) / i // k / slices g * k : (g + 1) * k belong in kimi_mini.groups only
    hand = re.compile(r"view\(-1, (group_size|k|n)\)|\[\w+ // (k|group_size|n|samples)\]|\[g \* \w+ : \(g \+ 1\)")
    package = Path(train.__file__).parent
    found = [
        f"{path.name}:{n}"
        for path in sorted(package.glob("*.py"))
        if path.name != "groups.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if hand.search(line)
    ]
    assert not found, found


def test_one_rl_iteration_reads_top_to_bottom_on_one_screen():
    source = inspect.getsource(train.rl_iteration)
    assert len(source.splitlines()) <= 60
    steps = re.findall(r"# (\d)\. (\w+)", source)
    assert [n for n, _ in steps] == ["1", "2", "3", "4"]
    for section in ("2.3.1", "2.3.2", "2.3.3", "2.6.2"):  # sampling, loss, length reward, partial rollouts
        assert section in source
