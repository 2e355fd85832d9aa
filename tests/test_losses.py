import pytest
import torch

from kimi_mini.losses import group_baseline, grpo_loss, omd_loss, reinforce_loss, rest_loss, sequence_log_ratio

B, T, K = 6, 5, 3


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(B, T, generator=g, requires_grad=True)  # stands in for the policy's parameters
    logprobs = torch.nn.functional.logsigmoid(theta)  # (B, T) log-probs that depend on theta
    old = (logprobs + 0.1 * torch.randn(B, T, generator=g)).detach()
    mask = torch.ones(B, T)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    return theta, logprobs, old, mask, rewards


def test_baseline_and_log_ratio_loop_vs_vectorised():
    _, logprobs, old, mask, rewards = batch()
    r_bar = group_baseline(rewards, K)
    rho = sequence_log_ratio(logprobs, old, mask)
    for j in range(B):
        group = rewards[(j // K) * K : (j // K + 1) * K]
        assert r_bar[j] == pytest.approx(group.mean().item())
        assert rho[j].item() == pytest.approx(
            sum((logprobs[j, t] - old[j, t]).item() for t in range(T) if mask[j, t]), abs=1e-6
        )


@pytest.mark.parametrize("tau", [0.1, 1.0, 5.0])
def test_omd_gradient_is_the_papers_eq3(tau):
    theta, logprobs, old, mask, rewards = batch()
    (grad,) = torch.autograd.grad(omd_loss(logprobs, old, mask, rewards, K, tau), theta, retain_graph=True)
    # Eq. 3: (1/k) sum_j [grad log pi(y_j) (r_j - r_bar) - tau/2 grad rho_j^2], an ascent direction, averaged over prompts.
    seq_logp = (logprobs * mask).sum(-1)  # (B,)
    rho = sequence_log_ratio(logprobs, old, mask)  # (B,)
    advantage = rewards - group_baseline(rewards, K)
    eq3 = torch.zeros_like(theta)
    for j in range(B):
        (g_logp,) = torch.autograd.grad(seq_logp[j], theta, retain_graph=True)
        (g_rho2,) = torch.autograd.grad(rho[j] ** 2, theta, retain_graph=True)
        eq3 += (g_logp * advantage[j] - tau / 2 * g_rho2) / B
    assert torch.allclose(grad, -eq3, atol=1e-6)


def test_at_the_reference_policy_omd_equals_reinforce():
    theta, logprobs, _, mask, rewards = batch()
    old = logprobs.detach()  # first gradient step of an iteration: pi_theta = pi_i, rho = 0
    (g_omd,) = torch.autograd.grad(omd_loss(logprobs, old, mask, rewards, K, tau=0.5), theta, retain_graph=True)
    (g_pg,) = torch.autograd.grad(reinforce_loss(logprobs, old, mask, rewards, K), theta, retain_graph=True)
    assert torch.allclose(g_omd, g_pg, atol=1e-6)


def test_grpo_at_ratio_one_is_normalised_policy_gradient():
    theta, logprobs, _, mask, rewards = batch()
    old = logprobs.detach()
    (g,) = torch.autograd.grad(grpo_loss(logprobs, old, mask, rewards, K), theta, retain_graph=True)
    grouped = rewards.view(-1, K)
    adv = ((grouped - grouped.mean(-1, keepdim=True)) / (grouped.std(-1, keepdim=True) + 1e-4)).view(-1)
    expected = (
        -(adv.unsqueeze(-1) * mask / mask.sum(-1, keepdim=True))
        * torch.autograd.grad(logprobs.sum(), theta, retain_graph=True)[0]
        / B
    )
    assert torch.allclose(g, expected, atol=1e-5)


def test_grpo_clipping_stops_the_gradient_past_the_clip():
    theta, logprobs, _, mask, rewards = batch()
    old = (logprobs - 1.0).detach()  # ratio e > 1.2 everywhere
    (g,) = torch.autograd.grad(grpo_loss(logprobs, old, mask, rewards, K), theta, retain_graph=True)
    positive = (rewards - group_baseline(rewards, K) > 0).unsqueeze(-1).expand(B, T)
    assert (g[positive] == 0).all()  # positive advantage, ratio above 1 + eps: clipped
    assert (g[~positive & (mask > 0)] != 0).any()  # negative advantage: the unclipped term is the max


def test_rest_has_no_negative_gradient():
    theta, logprobs, old, mask, rewards = batch()
    (g,) = torch.autograd.grad(rest_loss(logprobs, old, mask, rewards, K), theta, retain_graph=True)
    assert (g[rewards == 0] == 0).all() and (g[rewards == 1] != 0).any()
    zero = rest_loss(logprobs, old, mask, torch.zeros(B), K)
    assert zero.item() == 0.0


def test_groups_with_equal_rewards_give_no_gradient():
    theta, logprobs, old, mask, _ = batch()
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    for loss in (
        reinforce_loss(logprobs, old, mask, rewards, K),
        grpo_loss(logprobs, logprobs.detach(), mask, rewards, K),
    ):
        (g,) = torch.autograd.grad(loss, theta, retain_graph=True)
        assert torch.allclose(g, torch.zeros_like(g), atol=1e-6)


def test_shape_errors_name_the_arguments():
    _, logprobs, old, mask, rewards = batch()
    with pytest.raises(ValueError, match="group_size = 4"):
        omd_loss(logprobs, old, mask, rewards, 4, tau=1.0)
    with pytest.raises(ValueError, match="mask"):
        omd_loss(logprobs, old, mask[:, :2], rewards, K, tau=1.0)
    with pytest.raises(ValueError, match="tau"):
        omd_loss(logprobs, old, mask, rewards, K, tau=0.0)


def test_omd_exercise_check_accepts_the_package_and_rejects_near_misses():
    from kimi_mini.exercises import check_omd_loss

    assert check_omd_loss(omd_loss).startswith("All 100")

    def unmasked(logprobs, old, mask, rewards, k, tau):  # forgets the padding mask
        rho = (logprobs - old).sum(-1)
        return ((rewards - group_baseline(rewards, k) - tau * rho) ** 2 / (2 * tau)).mean()

    def global_baseline(logprobs, old, mask, rewards, k, tau):  # the batch mean instead of the group mean
        rho = ((logprobs - old) * mask).sum(-1)
        return ((rewards - rewards.mean() - tau * rho) ** 2 / (2 * tau)).mean()

    def token_mean(logprobs, old, mask, rewards, k, tau):  # a per-token mean log-ratio, not the sequence sum
        rho = ((logprobs - old) * mask).sum(-1) / mask.sum(-1)
        return ((rewards - group_baseline(rewards, k) - tau * rho) ** 2 / (2 * tau)).mean()

    for wrong in (unmasked, global_baseline, token_mean):
        with pytest.raises(AssertionError):
            check_omd_loss(wrong)


def test_leave_one_out_baseline_loop_and_its_scale_against_the_group_mean():
    from kimi_mini.losses import leave_one_out_baseline

    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.25])
    k = 4
    loo = leave_one_out_baseline(rewards, k)
    for j in range(len(rewards)):
        group = rewards[(j // k) * k : (j // k + 1) * k].tolist()
        others = group[: j % k] + group[j % k + 1 :]
        assert loo[j].item() == pytest.approx(sum(others) / (k - 1))
    # including the sample itself scales the advantage by (k - 1) / k
    assert torch.allclose(rewards - group_baseline(rewards, k), (k - 1) / k * (rewards - loo))
    with pytest.raises(ValueError, match="group_size"):
        leave_one_out_baseline(rewards, 1)


def test_ppo_clip_gradient_is_zero_past_the_clip_in_the_advantages_direction():
    from kimi_mini.losses import ppo_clip_loss

    ratio = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5], dtype=torch.float64)
    for sign in (1.0, -1.0):
        logprobs = torch.log(ratio).requires_grad_()
        loss = ppo_clip_loss(logprobs, torch.zeros(5, dtype=torch.float64), torch.tensor(sign), clip_eps=0.2)
        (grad,) = torch.autograd.grad(loss.sum(), logprobs)
        clipped = ratio > 1.2 if sign > 0 else ratio < 0.8
        assert (grad[clipped] == 0).all()
        assert torch.allclose(grad[~clipped], -sign * ratio[~clipped])  # d(-ratio A)/d log pi = -ratio A


def test_grpo_loss_is_ppo_clip_on_group_normalised_advantages():
    from kimi_mini.losses import ppo_clip_loss

    theta, logprobs, old, mask, rewards = batch()
    grouped = rewards.view(-1, K)
    advantage = ((grouped - grouped.mean(-1, keepdim=True)) / (grouped.std(-1, keepdim=True) + 1e-4)).view(-1, 1)
    expected = ((ppo_clip_loss(logprobs, old, advantage) * mask).sum(-1) / mask.sum(-1)).mean()
    assert torch.allclose(grpo_loss(logprobs, old, mask, rewards, K), expected)
