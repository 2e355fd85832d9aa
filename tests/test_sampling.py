import json

import pytest
import torch

from kimi_mini.config import RLConfig, TaskConfig
from kimi_mini.policy import build_policy
from kimi_mini.sampling import ProblemPool, draw, guessable, sampling_weights
from kimi_mini.tasks import make_problems
from kimi_mini.train import train_rl
from kimi_mini.warmup import load_warmup_policy

SMALL = dict(prompts_per_iteration=4, group_size=4, max_new_tokens=24, eval_every=2, eval_problems=8, lr=1e-3)


def pool_of(n=64):
    return ProblemPool.build(n, seed=0, task_cfg=TaskConfig())


def test_uniform_and_curriculum_weights():
    pool = pool_of()
    hard = torch.tensor([p.difficulty == "hard" for p in pool.problems])
    assert torch.equal(sampling_weights(pool, "uniform", 0, 8), torch.ones(64, dtype=torch.float64))
    assert torch.equal(sampling_weights(pool, "curriculum", 7, 8), torch.ones(64, dtype=torch.float64))
    late = sampling_weights(pool, "curriculum", 8, 8)  # from the switch on: hard problems only
    assert torch.equal(late > 0, hard) and 0 < int(hard.sum()) < 64
    indices = draw(pool, "curriculum", 8, 4, seed=1, curriculum_switch=8)
    assert len(set(indices)) == 4 and all(pool.problems[i].difficulty == "hard" for i in indices)


def test_prioritized_weights_are_one_minus_the_success_rate():
    pool = pool_of(4)
    pool.record([0, 1, 2], torch.tensor([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0.0]), group_size=4)
    assert pool.success_rate().tolist() == [1.0, 0.25, 0.0, 0.0]  # problem 3 never drawn: s = 0
    assert sampling_weights(pool, "prioritized", 0, 0).tolist() == [0.0, 0.75, 1.0, 1.0]
    counts = torch.zeros(4)
    for seed in range(2000):
        counts[draw(pool, "prioritized", 0, 1, seed=seed)] += 1
    assert counts[0] == 0 and abs(counts[1] / counts[2] - 0.75) < 0.12  # proportional to 1 - s_i
    # every problem always solved: the iteration still gets its prompts, drawn uniformly
    pool.record([0, 1, 2, 3], torch.ones(16), group_size=4)
    pool.successes = list(pool.attempts)
    assert sorted(draw(pool, "prioritized", 0, 4, seed=0)) == [0, 1, 2, 3]


def test_filtered_problems_are_never_drawn_and_errors_are_clear():
    pool = pool_of(8)
    pool.active = [i % 2 == 0 for i in range(8)]
    for seed in range(50):
        assert all(i % 2 == 0 for i in draw(pool, "uniform", 0, 4, seed=seed))
    with pytest.raises(ValueError, match="only 4 active problems"):
        draw(pool, "uniform", 0, 5, seed=0)
    with pytest.raises(ValueError, match="sampler = 'fresh'"):
        sampling_weights(pool, "fresh", 0, 0)
    with pytest.raises(ValueError, match="pool_size = 8"):
        RLConfig(sampling="uniform", pool_size=8, prompts_per_iteration=16)


def test_the_guess_filter_drops_easy_problems_more_than_hard_ones():
    policy, tokenizer = load_warmup_policy()
    share = {}
    for level in ("easy", "hard"):
        problems = make_problems(48, seed=3, difficulty=level)
        share[level] = sum(guessable(policy, tokenizer, problems, seed=0)) / 48
    assert share["easy"] > share["hard"] + 0.2, share


def assert_resume_matches(full, cfg, run_dir, tokenizer, tiny_config):
    """Two iterations, stop, resume to the end: the same metrics as the uninterrupted run ``full``."""
    torch.manual_seed(0)
    half = RLConfig(**{**cfg.__dict__, "iterations": 2})
    train_rl(build_policy(tiny_config, tokenizer), tokenizer, half, run_dir, progress=False)
    torch.manual_seed(0)
    resumed = train_rl(build_policy(tiny_config, tokenizer), tokenizer, cfg, run_dir, progress=False)
    timing = {"rollout_seconds", "train_seconds", "tokens_per_second"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(full)


def test_pool_counts_survive_a_kill_and_resume(tmp_path, tokenizer, tiny_config):
    cfg = RLConfig(iterations=4, sampling="prioritized", pool_size=16, **SMALL)
    torch.manual_seed(0)
    full = train_rl(build_policy(tiny_config, tokenizer), tokenizer, cfg, tmp_path / "a", progress=False)
    assert all(sum(row[f"sampled_{lv}"] for lv in ("easy", "mid", "hard")) == 4 for row in full)
    pool = json.loads((tmp_path / "a" / "checkpoint.json").read_text())["pool"]
    assert sum(pool["attempts"]) == 4 * 4 * 4  # 4 iterations x 4 problems x 4 samples
    assert_resume_matches(full, cfg, tmp_path / "b", tokenizer, tiny_config)


def test_pool_samplers_with_partial_rollouts_count_each_group_once_and_resume(tmp_path, tokenizer, tiny_config):
    """A group that waits in the replay buffer is recorded in the pool in the iteration it finishes."""
    cfg = RLConfig(iterations=4, sampling="prioritized", pool_size=16, partial_rollouts=True, segment_tokens=8, **SMALL)
    torch.manual_seed(0)
    full = train_rl(build_policy(tiny_config, tokenizer), tokenizer, cfg, tmp_path / "a", progress=False)
    meta = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    finished = sum(row["finished_groups"] for row in full)
    assert sum(meta["pool"]["attempts"]) == finished * 4  # 4 samples per finished group
    started = sum(sum(row[f"sampled_{lv}"] for lv in ("easy", "mid", "hard")) for row in full)
    waiting = meta["buffer"]["groups"]
    assert started == finished + len(waiting) and finished > 0 and waiting  # some groups span iterations
    assert all(g["index"] is not None for g in waiting)
    assert_resume_matches(full, cfg, tmp_path / "b", tokenizer, tiny_config)
