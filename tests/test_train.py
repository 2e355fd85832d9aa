import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from kimi_mini.policy import build_policy
from kimi_mini.tasks import trace_counts
from kimi_mini.train import RLConfig, load_checkpoint, train_rl

TIMING = {"rollout_seconds", "train_seconds", "tokens_per_second"}
SMALL = dict(
    prompts_per_iteration=4, group_size=4, max_new_tokens=24, eval_every=2, eval_problems=8, lr=1e-3, grad_steps=2
)


def fresh_policy(tokenizer, tiny_config):
    torch.manual_seed(0)
    return build_policy(tiny_config, tokenizer)


def deterministic(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_a_short_run_logs_every_metric_and_changes_the_policy(tmp_path, tokenizer, tiny_config):
    policy = fresh_policy(tokenizer, tiny_config)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    history = train_rl(policy, tokenizer, RLConfig(iterations=3, **SMALL), tmp_path, progress=False)
    assert [row["iteration"] for row in history] == [0, 1, 2]
    keys = {"reward", "response_tokens", "truncated", "kl_prev", "entropy", "loss"} | TIMING
    assert all(keys <= set(row) for row in history)
    assert "eval_accuracy" in history[1] and "eval_accuracy" in history[2] and "eval_accuracy" not in history[0]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    assert list(tmp_path.glob("policy-*.safetensors")) == [tmp_path / "policy-000002.safetensors"]


@pytest.mark.parametrize("loss", ["omd", "reinforce", "grpo", "rest"])
def test_every_loss_runs(tmp_path, tokenizer, tiny_config, loss):
    history = train_rl(
        fresh_policy(tokenizer, tiny_config),
        tokenizer,
        RLConfig(iterations=1, loss=loss, **SMALL),
        tmp_path,
        progress=False,
    )
    assert len(history) == 1 and all(v == v for v in history[0].values())  # no NaN


def test_resume_gives_the_uninterrupted_metrics(tmp_path, tokenizer, tiny_config):
    full = train_rl(
        fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(iterations=4, **SMALL), tmp_path / "a", progress=False
    )
    policy = fresh_policy(tokenizer, tiny_config)
    train_rl(policy, tokenizer, RLConfig(iterations=2, **SMALL), tmp_path / "b", progress=False)
    resumed_policy = fresh_policy(tokenizer, tiny_config)  # a new process would start from scratch weights
    resumed = train_rl(resumed_policy, tokenizer, RLConfig(iterations=4, **SMALL), tmp_path / "b", progress=False)
    assert deterministic(resumed) == deterministic(full)


@pytest.mark.parametrize("extra", [{}, dict(partial_rollouts=True, segment_tokens=7)], ids=["plain", "partial"])
def test_sigkill_mid_run_then_resume(tmp_path, tokenizer, tiny_config, extra):
    """Killed at any moment, a run resumes to the uninterrupted metrics; with partial rollouts the
    unfinished trajectories in the replay buffer are part of the checkpoint and survive too."""
    cfg = dict(iterations=6, **SMALL, **extra)
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, torch
            sys.path.insert(0, {str(os.path.dirname(__file__))!r})
            torch.set_num_threads(1)
            from conftest import TINY
            from kimi_mini.policy import build_policy
            from kimi_mini.tokenizer import build_char_tokenizer
            from kimi_mini.train import RLConfig, train_rl
            tok = build_char_tokenizer()
            torch.manual_seed(0)
            policy = build_policy(TINY, tok)
            train_rl(policy, tok, RLConfig(**{cfg!r}), {str(tmp_path / "run")!r}, progress=False)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    checkpoint = tmp_path / "run" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.exists() and json.loads(checkpoint.read_text())["iteration"] >= 1:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed; make it longer")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(checkpoint.read_text())["iteration"]
    assert killed_at < 5
    resumed = train_rl(
        fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(**cfg), tmp_path / "run", progress=False
    )
    full = train_rl(fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(**cfg), tmp_path / "full", progress=False)
    assert deterministic(resumed) == deterministic(full)
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporaries, no lock
    if extra:
        assert any(row["carried_rows"] for row in full)  # the buffer was in use across the kill


def test_checkpoint_loads_without_pickle_and_checks_the_shape(tmp_path, tokenizer, tiny_config):
    train_rl(fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(iterations=1, **SMALL), tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "nothing-here", fresh_policy(tokenizer, tiny_config)) is None
    from kimi_mini.config import ModelConfig

    other = build_policy(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), tokenizer)
    with pytest.raises(ValueError, match="does not fit this policy"):
        load_checkpoint(tmp_path, other)


def test_non_finite_loss_names_the_iteration(tmp_path, tokenizer, tiny_config, monkeypatch):
    import kimi_mini.train as train

    monkeypatch.setattr(train.losses, "omd_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="iteration 0, gradient step 0: the omd loss is nan"):
        train_rl(
            fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(iterations=2, **SMALL), tmp_path, progress=False
        )


def test_kl_estimate_is_never_negative():
    from kimi_mini.train import kl_k3

    log_ratio = torch.linspace(-5, 5, 101)
    assert (kl_k3(log_ratio) >= 0).all() and kl_k3(torch.zeros(1)).item() == 0.0


def test_heldout_metrics_split_by_difficulty_and_count_answer_tokens(tokenizer, tiny_config):
    from kimi_mini.train import _answer_tokens, heldout_metrics

    assert _answer_tokens(tokenizer, "4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5", "eos") == len("answer (4*3)+5") + 1
    assert _answer_tokens(tokenizer, "answer (4*3)+5", "length") == len("answer (4*3)+5")
    assert _answer_tokens(tokenizer, "4*3=12: 12+5=17 vs", "length") == 0
    policy = fresh_policy(tokenizer, tiny_config).eval()
    m = heldout_metrics(policy, tokenizer, RLConfig(eval_problems=24, max_new_tokens=16))
    levels = [key[len("eval_accuracy_") :] for key in m if key.startswith("eval_accuracy_")]
    assert set(levels) <= {"easy", "mid", "hard"} and len(levels) >= 2
    assert 0 <= m["eval_answer_share"] <= 1 and 1 <= m["eval_tokens"] <= 16
    assert all(0 <= m[f"eval_accuracy_{level}"] <= 1 for level in levels)


def test_heldout_outcomes_are_per_problem_on_problems_shared_by_every_seed(tokenizer, tiny_config):
    """Seed 0 and seed 1 answer the same problems (columns pair up for kimi_mini.stats) with their own
    sampling noise; the lists agree with the rollouts they summarize."""
    from kimi_mini.rollout import rollout_rewards, sample
    from kimi_mini.tasks import heldout_problems, policy_prompts
    from kimi_mini.train import heldout_outcomes

    policy = fresh_policy(tokenizer, tiny_config).eval()
    a = heldout_outcomes(policy, tokenizer, RLConfig(max_new_tokens=12, seed=0), n=10)
    b = heldout_outcomes(policy, tokenizer, RLConfig(max_new_tokens=12, seed=1), n=10)
    problems = heldout_problems(10, 0)
    again = sample(policy, tokenizer, policy_prompts(problems, tokenizer), 1, 12, 1.0, seed=1)
    assert b["correct"] == [int(v) for v in rollout_rewards(problems, again).tolist()]
    assert b["tokens"] == again.lengths.tolist() and a["tokens"] != b["tokens"]
    assert b["truncated"] == [int(n == 12 and r == "length") for n, r in zip(b["tokens"], again.finish_reason)]
    assert len(a["correct"]) == len(a["truncated"]) == 10
    assert b["candidates"] == [trace_counts(t).candidates for t in again.texts]
    assert b["checks"] == [trace_counts(t).checks for t in again.texts]
    assert b["backtracks"] == [trace_counts(t).backtracks for t in again.texts]


def test_an_outcome_at_a_smaller_budget_is_the_longer_sample_cut_there(tokenizer, tiny_config):
    """Every row draws noise at every step, so the response under limit B is the longer response cut at
    B: chapter 5 reads a policy's accuracy at every evaluation budget off one long sample."""
    from kimi_mini.train import heldout_outcomes

    policy = fresh_policy(tokenizer, tiny_config).eval()
    cfg = RLConfig(max_new_tokens=8, seed=3)
    long = heldout_outcomes(policy, tokenizer, cfg, n=24, max_new_tokens=40, cut_at=(8, 20))
    short = heldout_outcomes(policy, tokenizer, cfg, n=24)  # the run's own limit: 8
    assert short["tokens"] == [min(n, 8) for n in long["tokens"]]
    assert short["truncated"] == [int(n > 8 or t) for n, t in zip(long["tokens"], long["truncated"])]
    assert short["correct"] == long["correct_at"]["8"]
    assert any(n > 8 for n in long["tokens"]) and any(n <= 8 for n in long["tokens"])  # both cases occur
    mid = heldout_outcomes(policy, tokenizer, cfg, n=24, max_new_tokens=20)
    assert mid["correct"] == long["correct_at"]["20"] and mid["tokens"] == [min(n, 20) for n in long["tokens"]]


def test_a_checkpoint_from_before_partial_rollouts_still_resumes(tmp_path, tokenizer, tiny_config):
    train_rl(fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(iterations=1, **SMALL), tmp_path, progress=False)
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    del meta["buffer"], meta["weights_sha256"]  # the format of the first trainer
    for key in ("length_penalty", "length_penalty_warmup", "overlong_buffer", "sampling", "pool_size"):  # added later
        del meta["config"][key]
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    history = train_rl(
        fresh_policy(tokenizer, tiny_config), tokenizer, RLConfig(iterations=2, **SMALL), tmp_path, progress=False
    )
    assert [row["iteration"] for row in history] == [0, 1]


def test_the_length_reward_is_added_after_its_warmup(tmp_path, tokenizer, tiny_config):
    cfg = RLConfig(iterations=3, length_penalty=0.5, length_penalty_warmup=1, **SMALL)
    history = train_rl(fresh_policy(tokenizer, tiny_config), tokenizer, cfg, tmp_path, progress=False)
    assert history[0]["length_reward"] == 0.0  # warm-up: plain RL
    for row in history:
        assert row["reward"] == pytest.approx(row["accuracy"] + row["length_reward"])
    assert any(row["length_reward"] != 0.0 for row in history[1:])
    with pytest.raises(ValueError, match="length_penalty = 0.5 there, 1.0 here"):
        train_rl(
            fresh_policy(tokenizer, tiny_config),
            tokenizer,
            RLConfig(iterations=4, length_penalty=1.0, length_penalty_warmup=1, **SMALL),
            tmp_path,
            progress=False,
        )


@pytest.mark.parametrize("loss", ["omd", "grpo", "reinforce"])
def test_micro_batches_give_the_whole_batch_gradient(loss):
    from kimi_mini.rollout import rollout_rewards, sample
    from kimi_mini.tasks import make_problems, prompt_text
    from kimi_mini.train import backward_in_micro_batches, backward_loss, policy_loss
    from kimi_mini.warmup import load_warmup_policy

    policy, tokenizer = load_warmup_policy()
    problems = make_problems(4, seed=11)
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], 4, 64, seed=0)
    rewards = rollout_rewards(problems, rollouts)
    assert 0 < rewards.sum() < len(rewards)
    got = {}
    for groups in (0, 1, 3):
        policy.zero_grad(set_to_none=True)
        loss_fn = policy_loss(RLConfig(loss=loss, group_size=4))
        if groups:
            logprobs, loss_value = backward_in_micro_batches(policy, rollouts, rewards, loss_fn, groups=groups)
        else:
            logprobs, loss_value = backward_loss(policy, rollouts, rewards, loss_fn)
        grads = torch.cat([p.grad.flatten() for p in policy.parameters()])
        got[groups] = (logprobs, loss_value, grads)
    whole = got[0]
    assert whole[2].abs().max() > 0
    for groups in (1, 3):
        assert torch.allclose(got[groups][0], whole[0], atol=1e-5)
        assert torch.allclose(got[groups][1], whole[1], atol=1e-6)
        assert torch.allclose(got[groups][2], whole[2], rtol=1e-4, atol=1e-6), (
            groups,
            (got[groups][2] - whole[2]).abs().max(),
        )


def _one_run(tmp_path, tokenizer, tiny_config, **extra):
    train_rl(
        fresh_policy(tokenizer, tiny_config),
        tokenizer,
        RLConfig(iterations=1, **SMALL, **extra),
        tmp_path,
        progress=False,
    )
    return json.loads((tmp_path / "checkpoint.json").read_text())


def test_damaged_checkpoints_are_one_line_errors_naming_the_file(tmp_path, tokenizer, tiny_config):
    from safetensors.torch import save_model

    meta = _one_run(tmp_path, tokenizer, tiny_config)
    weights = tmp_path / meta["weights"]
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=f"{meta['weights']} is damaged: its SHA-256 is .*checkpoint.json"):
        load_checkpoint(tmp_path, fresh_policy(tokenizer, tiny_config))
    del meta["weights_sha256"]  # as in checkpoints written before checksums: reading the file fails instead
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"{meta['weights']} cannot be read as safetensors weights"):
        load_checkpoint(tmp_path, fresh_policy(tokenizer, tiny_config))
    nan_policy = fresh_policy(tokenizer, tiny_config)
    with torch.no_grad():
        next(nan_policy.parameters()).fill_(float("nan"))
    save_model(nan_policy, str(weights))
    with pytest.raises(ValueError, match=f"{meta['weights']} is damaged: \\d+ tensor.* NaN"):
        load_checkpoint(tmp_path, fresh_policy(tokenizer, tiny_config))
    text = json.dumps(meta)
    (tmp_path / "checkpoint.json").write_text(text[:500])  # truncated while copying
    with pytest.raises(ValueError, match=r"checkpoint.json is damaged \(not valid JSON"):
        load_checkpoint(tmp_path, fresh_policy(tokenizer, tiny_config))
    (tmp_path / "checkpoint.json").write_text(json.dumps({"iteration": 0}))
    with pytest.raises(ValueError, match="checkpoint.json is damaged: it has no valid weights, history, config"):
        load_checkpoint(tmp_path, fresh_policy(tokenizer, tiny_config))
    (tmp_path / "checkpoint.json").write_text(json.dumps({**meta, "weights_sha256": None}))
    with pytest.raises(ValueError, match="checkpoint.json is damaged: it has no valid weights_sha256"):
        load_checkpoint(tmp_path, fresh_policy(tokenizer, tiny_config))


def test_resuming_with_other_settings_names_no_api_argument(tmp_path, tokenizer, tiny_config):
    _one_run(tmp_path, tokenizer, tiny_config)
    with pytest.raises(ValueError) as err:
        train_rl(
            fresh_policy(tokenizer, tiny_config),
            tokenizer,
            RLConfig(iterations=2, **{**SMALL, "lr": 2e-3}),
            tmp_path,
            progress=False,
        )
    assert "lr = 0.001 there, 0.002 here" in str(err.value) and "resume=False" not in str(err.value)
    assert "start the new run in another directory" in str(err.value)


def test_collapse_rule():
    from kimi_mini.train import collapse_reason

    cfg = RLConfig(eval_problems=128)
    rows = [dict(iteration=0, reward=0.45), dict(iteration=1, eval_accuracy=0.5), dict(iteration=2, eval_accuracy=0.0)]
    assert (
        collapse_reason(rows, cfg) == "held-out accuracy fell to 0 at iteration 2 after 0.50 (held-out) at iteration 1"
    )
    assert "after 0.45 (training) at iteration 0" in collapse_reason([rows[0], rows[2]], cfg)
    assert collapse_reason(rows[:2], cfg) is None  # not 0
    assert collapse_reason([dict(iteration=0, reward=0.1), rows[2]], cfg) is None  # never above 0.2
    assert collapse_reason([dict(iteration=0, reward=0.1, accuracy=0.1), rows[2]], cfg) is None
    assert collapse_reason(rows, RLConfig(eval_problems=32)) is None  # too few problems to tell
    assert collapse_reason(rows, RLConfig(eval_problems=128, collapse_accuracy=0.0)) is None  # off
    assert collapse_reason(rows, RLConfig(eval_problems=128, collapse_accuracy=0.6)) is None


def test_a_collapsed_run_stops_with_its_checkpoint_kept(tmp_path, tokenizer, tiny_config, monkeypatch):
    import kimi_mini.train as train
    from kimi_mini.train import TrainingCollapsed

    accuracies = iter([0.5, 0.0])
    monkeypatch.setattr(train, "heldout_metrics", lambda *a, **k: dict(eval_accuracy=next(accuracies)))
    cfg = RLConfig(iterations=6, **{**SMALL, "eval_every": 2, "eval_problems": 64, "checkpoint_every": 100})
    with pytest.raises(TrainingCollapsed, match="fell to 0 at iteration 3 after 0.50 .* collapse_accuracy = 0"):
        train_rl(fresh_policy(tokenizer, tiny_config), tokenizer, cfg, tmp_path, progress=False)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["iteration"] == 3
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4
    monkeypatch.setattr(train, "heldout_metrics", lambda *a, **k: dict(eval_accuracy=0.0))
    resumed = RLConfig(**{**cfg.__dict__, "collapse_accuracy": 0.0, "iterations": 5})  # may change on resume
    history = train_rl(fresh_policy(tokenizer, tiny_config), tokenizer, resumed, tmp_path, progress=False)
    assert [row["iteration"] for row in history] == [0, 1, 2, 3, 4]


def test_memory_is_estimated_before_sampling_and_exhaustion_explained(tmp_path, tokenizer, tiny_config, monkeypatch):
    import kimi_mini.train as train
    from kimi_mini.train import memory_estimate

    policy = fresh_policy(tokenizer, tiny_config)
    c = policy.config
    cfg = RLConfig(prompts_per_iteration=16, group_size=8, max_new_tokens=480, eval_problems=64)
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    prefill = 64 * 10 * c.vocab_size * 4  # the prefill's logits: 64 distinct prompts (the held-out set)
    least = 128 * 480 * 12 + 3 * 128 * c.vocab_size * 4 + prefill + 2 * c.num_hidden_layers * 128 * 10 * kv * 4
    estimate = memory_estimate(policy, cfg, prompt_tokens=10)
    assert estimate["least"] == least and estimate["most"] > least
    huge = RLConfig(prompts_per_iteration=65536, group_size=1024, max_new_tokens=480)
    with pytest.raises(ValueError, match=r"need at least [\d.]+ GiB on cpu to sample \(65536 prompts x 1024"):
        train_rl(policy, tokenizer, huge, tmp_path / "huge", progress=False)
    assert not (tmp_path / "huge").exists()  # refused before anything was written

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 9 bytes")

    monkeypatch.setattr(train, "rl_iteration", exhausted)
    with pytest.raises(MemoryError, match="out of memory on cpu .*may need up to .* GiB"):
        train_rl(policy, tokenizer, RLConfig(iterations=1, **SMALL), tmp_path / "oom", progress=False)
    monkeypatch.setattr(train, "rl_iteration", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # other errors pass unchanged
        train_rl(policy, tokenizer, RLConfig(iterations=1, **SMALL), tmp_path / "other", progress=False)
