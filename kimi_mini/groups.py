"""The batch layout every part of kimi_mini relies on: a prompt's k responses are k contiguous rows.

With G prompts and ``group_size`` k, a batch has B = G * k rows and row ``i`` answers prompt ``i // k``:
:func:`kimi_mini.rollout.sample` writes it, the losses' group baseline r_bar (report 2.3.2), the length
reward's min_len and max_len (2.3.3), the problem pool's success counts, long2short's per-problem choices
and the TRL reward functions read it. These helpers are that layout, spelled once.

Introduced in {ref}`ch2-sampler`.
"""

from __future__ import annotations

import torch

__all__ = ["by_group", "per_row", "group_chunks"]


def _check(n_rows: int, group_size: int) -> None:
    if group_size < 1 or n_rows % group_size:
        raise ValueError(f"group_size = {group_size} is invalid: it must divide the batch of {n_rows} rows.")


def by_group(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B, ...) rows -> (G, k, ...): each prompt's k responses along dimension 1 (a view of a contiguous
    tensor or numpy array)."""
    _check(x.shape[0], group_size)
    return x.reshape(-1, group_size, *x.shape[1:])


def per_row(items: list, group_size: int) -> list:
    """G per-prompt items -> B per-row items: each repeated for its prompt's k rows."""
    return [item for item in items for _ in range(group_size)]


def group_chunks(items: list, group_size: int) -> list[list]:
    """B per-row items -> G lists of k: the responses of each prompt."""
    _check(len(items), group_size)
    return [items[start : start + group_size] for start in range(0, len(items), group_size)]
