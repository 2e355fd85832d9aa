import pytest
import torch

from kimi_mini.config import RLConfig
from kimi_mini.partial import ReplayBuffer, assemble, find_repeat, partial_rollout_step
from kimi_mini.rollout import sample
from kimi_mini.tasks import TaskConfig, make_problems, prompt_text
from kimi_mini.train import train_rl

TASK = TaskConfig()


def cfg(**kw):
    base = dict(prompts_per_iteration=3, group_size=2, max_new_tokens=24, partial_rollouts=True, repeat_times=0)
    return RLConfig(**{**base, **kw})


def test_a_budget_above_every_length_gives_plain_rollouts(tokenizer, tiny_policy):
    policy, c = tiny_policy.eval(), cfg(segment_tokens=24)
    buffer = ReplayBuffer()
    step = partial_rollout_step(policy, tokenizer, buffer, c, iteration=0, seed=5, task_cfg=TASK)
    problems = make_problems(3, seed=5, cfg=TASK)
    plain = sample(policy, tokenizer, [prompt_text(p) for p in problems], 2, 24, seed=5)
    trajectories = [t for g in step.finished for t in g.trajectories]
    assert not buffer.groups and [g.problem for g in step.finished] == problems
    for i, t in enumerate(trajectories):
        assert t.ids == plain.response_ids[i, : int(plain.lengths[i])].tolist()
        assert t.finish_reason == plain.finish_reason[i]


def test_greedy_segments_add_up_to_the_uninterrupted_response(tokenizer, tiny_policy):
    """Cut into segments of 5 tokens over several iterations (same weights), greedy trajectories are
    token for token the one-shot greedy responses, and each is the concatenation of its segments."""
    policy, c = tiny_policy.eval(), cfg(segment_tokens=5, temperature=1e-9)
    buffer, finished = ReplayBuffer(), []
    for iteration in range(6):
        finished += partial_rollout_step(policy, tokenizer, buffer, c, iteration, seed=7, task_cfg=TASK).finished
    assert finished, "no group finished"
    for group in finished[:3]:
        whole = sample(policy, tokenizer, [prompt_text(group.problem)], 1, 24, temperature=0)
        for t in group.trajectories:
            assert t.ids == [i for s in t.segments for i in s.ids]
            assert t.ids == whole.response_ids[0, : int(whole.lengths[0])].tolist()
            assert [s.iteration for s in t.segments] == list(range(group.started, group.started + len(t.segments)))
            assert all(len(s.ids) <= 5 for s in t.segments)


def test_the_batch_stays_full_and_the_mask_drops_exactly_the_stale_tokens(tokenizer, tiny_policy):
    policy, c = tiny_policy.eval(), cfg(segment_tokens=8)
    buffer = ReplayBuffer()
    for iteration in range(3):
        step = partial_rollout_step(policy, tokenizer, buffer, c, iteration, seed=iteration, task_cfg=TASK)
        assert step.carried_rows + 2 * step.new_groups > 6 - 2  # rows in use: at most one group short
    assert step.finished, "the tiny policy rarely ends early: its groups finish at 24 tokens, iteration 2"
    for mask_stale in (True, False):
        r = assemble(step.finished, tokenizer, iteration=2, temperature=1.0, mask_stale=mask_stale)
        stale = r.mask & (r.sampled_in < 2)
        assert stale.any()
        expected = r.mask & ~stale if mask_stale else r.mask
        assert torch.equal(r.loss_mask, expected)
        assert r.response_ids.shape == r.logprobs.shape == r.mask.shape
        assert (r.logprobs[~r.mask] == 0).all() and (r.logprobs[r.mask] <= 0).all()


def test_buffer_survives_a_json_round_trip(tokenizer, tiny_policy):
    import json

    buffer = ReplayBuffer()
    partial_rollout_step(tiny_policy.eval(), tokenizer, buffer, cfg(segment_tokens=4), 0, seed=1, task_cfg=TASK)
    assert buffer.groups
    again = ReplayBuffer.from_state_dict(json.loads(json.dumps(buffer.state_dict())))
    assert again == buffer


def test_find_repeat():
    assert find_repeat([5, 6, 5, 6, 5, 6, 5, 6, 9], 0, block=4, times=4) == 8
    assert find_repeat([5, 6, 5, 6, 5, 6, 9], 0, block=4, times=4) is None
    assert find_repeat([1, 2, 3, 1, 2, 3, 1, 2, 3], 0, block=3, times=3) == 9
    assert find_repeat([1, 2, 3, 1, 2, 3, 1, 2, 3], 0, block=2, times=3) is None  # block too long to look for
    assert find_repeat([7, 7, 7, 7, 7, 7, 7, 7], 0, block=4, times=4) == 8  # "77" four times
    assert find_repeat([5, 6, 5, 6, 5, 6, 5, 6], 8, block=4, times=4) is None  # already checked
    assert find_repeat(list(range(50)), 0, block=16, times=2) is None
    with pytest.raises(ValueError, match="times >= 2"):
        find_repeat([1, 1], 0, block=2, times=1)


def test_find_repeat_exercise_check():
    from kimi_mini.exercises import check_find_repeat

    assert check_find_repeat(find_repeat).startswith("All 300")
    with pytest.raises(AssertionError):  # only blocks of exactly `block` tokens
        check_find_repeat(lambda ids, start, block, times: find_repeat(ids, start, 2, times) if block == 2 else None)
    with pytest.raises(AssertionError):  # ignores `start`
        check_find_repeat(lambda ids, start, block, times: find_repeat(ids, 0, block, times))


def test_partial_training_runs_and_repeats_are_stopped(tmp_path, tokenizer, tiny_config):
    torch.manual_seed(0)
    from kimi_mini.policy import build_policy

    policy = build_policy(tiny_config, tokenizer)
    c = cfg(segment_tokens=8, iterations=4, eval_every=100, eval_problems=2, repeat_times=3, repeat_block=4)
    history = train_rl(policy, tokenizer, c, tmp_path, progress=False)
    assert len(history) == 4 and all("finished_groups" in row for row in history)
    trained = [row for row in history if row["finished_groups"]]
    assert trained and all(0 <= row["reused_share"] < 1 for row in trained)


@pytest.mark.parametrize(
    "bad", [dict(segment_tokens=0), dict(partial_rollouts="yes"), dict(repeat_block=1), dict(repeat_times=1)]
)
def test_partial_settings_are_validated(bad):
    with pytest.raises(ValueError, match="RLConfig"):
        RLConfig(**bad)


def test_default_repeat_detection_never_stops_a_search_trace():
    import random

    from kimi_mini.tasks import search_trace
    from kimi_mini.tokenizer import build_char_tokenizer

    tok, rng, c = build_char_tokenizer(), random.Random(0), RLConfig()
    for problem in make_problems(1000, seed=3):
        ids = tok(search_trace(problem, rng), add_special_tokens=False)["input_ids"]
        assert find_repeat(ids, 0, c.repeat_block, c.repeat_times) is None, search_trace(problem, rng)


def test_without_waiting_each_trajectory_enters_the_loss_once_in_the_iteration_it_ends(tokenizer, tiny_policy):
    """``PartialStep.ended`` lists exactly the trajectories that ended in that iteration: over several
    iterations every trajectory of every finished group appears once, in the iteration of its last segment."""
    policy, c = tiny_policy.eval(), cfg(segment_tokens=6)
    buffer, seen, finished = ReplayBuffer(), [], []
    for iteration in range(6):
        step = partial_rollout_step(policy, tokenizer, buffer, c, iteration, seed=iteration, task_cfg=TASK)
        assert all(t.finish_reason and t.segments[-1].iteration == iteration for _, t in step.ended)
        seen += [id(t) for _, t in step.ended]
        finished += step.finished
    assert finished, "no group finished in 6 iterations"
    assert len(seen) == len(set(seen))  # never twice
    assert {id(t) for g in finished for t in g.trajectories} <= set(seen)
    assert len(seen) > sum(len(g.trajectories) for g in finished)  # some ended before their group did


def test_without_waiting_the_baseline_is_the_batch_mean(tmp_path, tokenizer, tiny_config):
    from kimi_mini.policy import build_policy
    from kimi_mini.train import baseline_rows

    torch.manual_seed(0)
    policy = build_policy(tiny_config, tokenizer)
    c = cfg(segment_tokens=8, iterations=4, eval_every=100, eval_problems=2, wait_for_group=False)
    history = train_rl(policy, tokenizer, c, tmp_path, progress=False)
    assert sum(row["ended_rows"] for row in history) >= 2 * sum(row["finished_groups"] for row in history)
    rollouts = type("R", (), {"__len__": lambda self: 5})()
    assert baseline_rows(c, rollouts) == 5 and baseline_rows(cfg(), rollouts) == 2
    assert baseline_rows(RLConfig(group_size=4, wait_for_group=False), rollouts) == 4  # no partial rollouts


@pytest.mark.parametrize("bad", [dict(sampling="uniform"), dict(length_penalty=1.0), dict(micro_batch_groups=1)])
def test_not_waiting_refuses_settings_that_need_whole_groups(bad):
    with pytest.raises(ValueError, match=f"RLConfig.{next(iter(bad))} .* wait_for_group = False"):
        cfg(wait_for_group=False, **bad)
    cfg(**bad)  # fine when groups are waited for
