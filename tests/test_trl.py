from types import SimpleNamespace

import pytest
import torch
from trl import GRPOConfig, GRPOTrainer

from kimi_mini.rewards import length_penalty
from kimi_mini.tasks import make_problems, prompt_text
from kimi_mini.trl import countdown_dataset, countdown_reward, make_length_reward
from kimi_mini.warmup import load_warmup_policy

PROMPT = "4 3 5 -> 17\n"


def _grpo_args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=64,
        max_steps=2,
        learning_rate=1e-4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        beta=0.0,
        scale_rewards="none",
        seed=0,
    )
    return GRPOConfig(**{**settings, **overrides})


def test_countdown_reward_accepts_text_and_chat_completions():
    completions = ["answer (4*3)+5", [{"content": "answer (4+3)+5"}], "no answer"]
    assert countdown_reward(completions, [[4, 3, 5]] * 3, [17] * 3) == [1.0, 0.0, 0.0]


def test_length_reward_is_the_per_group_penalty_and_checks_the_grouping():
    reward = make_length_reward(num_generations=2, weight=0.5)
    completions = ["answer (4*3)+5", "4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5"] * 2
    ids = [list(range(len(c) + 1)) for c in completions]
    prompts = [PROMPT, PROMPT, "1 1 1 -> 3\n", "1 1 1 -> 3\n"]
    numbers, target = [[4, 3, 5]] * 2 + [[1, 1, 1]] * 2, [17, 17, 3, 3]
    got = reward(prompts, completions, ids, numbers, target)
    correct = torch.tensor(countdown_reward(completions, numbers, target))
    want = 0.5 * length_penalty(torch.tensor([len(i) for i in ids]), correct, 2)
    assert got == want.tolist() and got[:2] == [0.25, -0.25]
    with pytest.raises(ValueError, match="answer different prompts"):
        reward([PROMPT, "1 1 1 -> 3\n"] * 2, completions, ids, numbers, target)
    warming = make_length_reward(num_generations=2, warmup_steps=10)
    assert (
        warming(prompts, completions, ids, numbers, target, trainer_state=SimpleNamespace(global_step=3)) == [0.0] * 4
    )


def test_grpo_trainer_runs_with_kimi_minis_rewards_on_cpu(tmp_path):
    policy, tokenizer = load_warmup_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    dataset = countdown_dataset(32, seed=1)
    assert dataset[0]["prompt"] == prompt_text(make_problems(1, seed=1)[0])
    args = _grpo_args(tmp_path, max_completion_length=96, scale_rewards="group")  # TRL's GRPO as it comes
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=[countdown_reward, make_length_reward(4)],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    logged = [row for row in trainer.state.log_history if "rewards/k15_length_reward/mean" in row]
    assert len(logged) == 2 and all(0 <= row["rewards/countdown_reward/mean"] <= 1 for row in logged)
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())


def test_omd_trainer_loss_is_kimi_minis_omd_loss(tmp_path):
    from kimi_mini.losses import omd_loss, sequence_log_ratio
    from kimi_mini.rollout import sample
    from kimi_mini.trl import OMDTrainer, omd_per_sequence

    policy, tokenizer = load_warmup_policy()
    trainer = OMDTrainer(
        model=policy,
        reward_funcs=[countdown_reward],
        args=_grpo_args(tmp_path),
        train_dataset=countdown_dataset(8, seed=1),
        processing_class=tokenizer,
        tau=0.5,
    )
    problems = make_problems(2, seed=5)
    rollouts = sample(policy, tokenizer, [prompt_text(p) for p in problems], 4, 48, seed=0)
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    mask = rollouts.mask.long()  # (B, T)
    inputs = dict(
        prompt_ids=rollouts.prompt_ids,
        prompt_mask=rollouts.prompt_mask,
        completion_ids=rollouts.response_ids,
        completion_mask=mask,
        advantages=rewards - rewards.view(2, 4).mean(1).repeat_interleave(4),
    )
    policy.eval()  # no gradient accumulation scaling
    logps = trainer._get_per_token_logps_and_entropies(
        policy,
        torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
        torch.cat([inputs["prompt_mask"], mask], 1),
        mask.shape[1],
    )[0]
    inputs["old_per_token_logps"] = (logps + 0.05 * torch.randn_like(logps)).detach() * mask  # a stale pi_i
    want = omd_loss(logps, inputs["old_per_token_logps"], mask.float(), rewards, 4, tau=0.5)
    got = trainer._compute_loss(policy, inputs)
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    # vLLM sampling: TRL's (B, 1) ratio pi_i(y) / p_vLLM(y), 0 where masked, weighs each sequence's surrogate
    weights = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0, 1.0, 0.0, 1.5]).unsqueeze(-1)  # (B, 1)
    rho = sequence_log_ratio(logps.detach(), inputs["old_per_token_logps"], mask)  # (B,)
    want = (weights.squeeze(-1) * omd_per_sequence(rho, inputs["advantages"], 0.5)).mean()
    trainer.use_vllm = True  # as GRPOTrainer sets it from GRPOConfig(use_vllm=True)
    got = trainer._compute_loss(policy, {**inputs, "importance_sampling_ratio": weights})
    trainer.use_vllm = False
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    for bad, match in ((dict(scale_rewards="group"), "scale_rewards='none'"), (dict(beta=0.1), "beta=0.0")):
        with pytest.raises(ValueError, match=match):
            OMDTrainer(
                model=policy,
                reward_funcs=[countdown_reward],
                args=_grpo_args(tmp_path, **bad),
                train_dataset=countdown_dataset(8, seed=1),
                processing_class=tokenizer,
            )


def test_omd_trainer_trains_with_two_gradient_steps_per_batch(tmp_path):
    from kimi_mini.trl import OMDTrainer

    policy, tokenizer = load_warmup_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = OMDTrainer(
        model=policy,
        reward_funcs=[countdown_reward, make_length_reward(4)],
        args=_grpo_args(tmp_path, num_iterations=2, max_steps=2),
        train_dataset=countdown_dataset(32, seed=1),
        processing_class=tokenizer,
    )
    trainer.train()
    ratios = [row["omd/log_ratio_abs"] for row in trainer.state.log_history if "omd/log_ratio_abs" in row]
    # step 1 samples and updates (rho = 0); step 2 reuses those samples: pi_theta has moved away from pi_i
    assert len(ratios) == 2 and ratios[0] < 1e-6 < ratios[1], ratios
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
