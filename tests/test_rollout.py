import itertools

import pytest
import torch

from kimi_mini.rollout import pass_at_k, rollout_rewards, sample, token_logprobs
from kimi_mini.tasks import Problem, prompt_text

PROMPTS = ["4 3 5 -> 17\n", "1 2 3 -> 16\n", "5 5 1 -> 24\n"]


def test_shapes_groups_and_masks(tokenizer, tiny_policy):
    r = sample(tiny_policy.eval(), tokenizer, PROMPTS, group_size=4, max_new_tokens=12, seed=0)
    B, T = r.response_ids.shape
    assert B == 12 and len(r) == 12 and T <= 12
    assert r.prompt_ids.shape[0] == 12 and torch.equal(r.prompt_ids[0], r.prompt_ids[3])  # groups contiguous
    assert not torch.equal(r.prompt_ids[3], r.prompt_ids[4])
    assert r.logprobs.shape == r.mask.shape == (B, T)
    assert (r.logprobs[~r.mask] == 0).all() and (r.logprobs[r.mask] <= 0).all()
    for i in range(B):
        n = int(r.lengths[i])
        ids = r.response_ids[i, :n].tolist()
        if r.finish_reason[i] == "eos":
            assert ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ids[:-1]
        else:
            assert r.finish_reason[i] == "length" and n == 12 and tokenizer.eos_token_id not in ids
        assert (r.response_ids[i, n:] == tokenizer.pad_token_id).all()
    assert r.stats["tokens"] == int(r.lengths.sum()) and r.stats["forward_seconds"] <= r.stats["seconds"]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recomputed_logprobs_match_the_sampler(tokenizer, tiny_policy, temperature):
    r = sample(tiny_policy.eval(), tokenizer, PROMPTS, group_size=3, max_new_tokens=40, temperature=temperature, seed=1)
    with torch.no_grad():
        recomputed = token_logprobs(tiny_policy, r)
    assert torch.allclose(recomputed, r.logprobs, atol=1e-5)


def test_greedy_matches_generate(tokenizer, tiny_policy):
    policy = tiny_policy.eval()
    r = sample(policy, tokenizer, PROMPTS, max_new_tokens=20, temperature=0.0)
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    out = policy.generate(
        **enc,
        max_new_tokens=20,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    for i in range(len(PROMPTS)):
        n = int(r.lengths[i])
        assert r.response_ids[i, :n].tolist() == out[i, enc["input_ids"].shape[1] :][:n].tolist()


def test_greedy_same_with_and_without_kv_cache(tokenizer, tiny_policy):
    policy = tiny_policy.eval()
    r = sample(policy, tokenizer, PROMPTS[:1], max_new_tokens=15, temperature=0.0)
    ids = tokenizer(PROMPTS[:1], return_tensors="pt")["input_ids"]
    for _ in range(int(r.lengths[0])):  # no cache: re-run the whole prefix every step
        with torch.no_grad():
            ids = torch.cat([ids, policy(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert r.response_ids[0, : int(r.lengths[0])].tolist() == ids[0, -int(r.lengths[0]) :].tolist()


def test_dropping_finished_rows_does_not_change_samples(tokenizer, tiny_policy):
    policy = tiny_policy.eval()
    never = sample(policy, tokenizer, PROMPTS, group_size=8, max_new_tokens=30, seed=3, compact_every=1.0)
    often = sample(policy, tokenizer, PROMPTS, group_size=8, max_new_tokens=30, seed=3, compact_every=0.01)
    assert torch.equal(never.response_ids, often.response_ids)
    assert torch.allclose(never.logprobs, often.logprobs, atol=1e-6)
    assert often.stats["steps"] == never.stats["steps"]


def test_seeded(tokenizer, tiny_policy):
    a = sample(tiny_policy.eval(), tokenizer, PROMPTS, group_size=2, max_new_tokens=10, seed=5)
    b = sample(tiny_policy, tokenizer, PROMPTS, group_size=2, max_new_tokens=10, seed=5)
    c = sample(tiny_policy, tokenizer, PROMPTS, group_size=2, max_new_tokens=10, seed=6)
    assert a.texts == b.texts and a.texts != c.texts


def test_sampling_follows_the_policy_distribution(tokenizer, tiny_policy):
    """The first token's empirical frequencies match softmax(logits) (the exponential race is exact)."""
    policy = tiny_policy.eval()
    r = sample(policy, tokenizer, PROMPTS[:1], group_size=4000, max_new_tokens=1, seed=0)
    with torch.no_grad():
        probs = torch.softmax(policy(tokenizer(PROMPTS[:1], return_tensors="pt")["input_ids"]).logits[0, -1], -1)
    freq = torch.bincount(r.response_ids[:, 0], minlength=len(probs)).float() / 4000
    assert (freq - probs).abs().max() < 0.03


def test_rewards(tokenizer, tiny_policy):
    r = sample(tiny_policy.eval(), tokenizer, [prompt_text(Problem((4, 3, 5), 17))], group_size=2, max_new_tokens=4)
    r.texts = ["answer (4*3)+5", "answer (4+3)+5"]
    assert rollout_rewards([Problem((4, 3, 5), 17)], r).tolist() == [1.0, 0.0]


def _pass_at_k_direct(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k", [(n, c, k) for n in (1, 4, 8) for c in range(n + 1) for k in (1, 2, n) if k <= n])
def test_pass_at_k_matches_direct_computation(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_direct(n, c, k), abs=1e-12)


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_bad_arguments(tokenizer, tiny_policy):
    with pytest.raises(ValueError, match="group_size"):
        sample(tiny_policy, tokenizer, PROMPTS, group_size=0)


def test_same_tokens_as_generate_with_the_same_seed(tokenizer, tiny_policy):
    """torch's CPU multinomial draws one exponential race per row from the global generator, as `sample`
    does from its own: the same seed gives the same tokens (temperature 1, no top-k/top-p)."""
    policy = tiny_policy.eval()
    r = sample(policy, tokenizer, PROMPTS, group_size=2, max_new_tokens=25, seed=11)
    enc = tokenizer([p for p in PROMPTS for _ in range(2)], return_tensors="pt", padding=True)
    torch.manual_seed(11)
    out = policy.generate(
        **enc,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        max_new_tokens=25,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    for i in range(len(r)):
        n = int(r.lengths[i])
        assert r.response_ids[i, :n].tolist() == out[i, enc["input_ids"].shape[1] :][:n].tolist()


@pytest.mark.parametrize("buckets", [2, 5])
def test_length_buckets_give_the_same_logprobs_and_gradients(tokenizer, tiny_policy, buckets):
    from kimi_mini.rollout import padded_slots

    policy = tiny_policy.eval()
    r = sample(policy, tokenizer, PROMPTS, group_size=4, max_new_tokens=40, seed=2)
    grads = []
    for n in (1, buckets):
        policy.zero_grad()
        lp = token_logprobs(policy, r, length_buckets=n)
        (lp * torch.linspace(0, 1, lp.numel()).view_as(lp)).sum().backward()
        grads.append([p.grad.clone() for p in policy.parameters()])
        if n == 1:
            base = lp.detach()
    assert torch.allclose(lp.detach(), base, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
    assert padded_slots(r, buckets) <= padded_slots(r, 1)


def test_per_row_budgets_stop_each_row_at_its_own_length(tokenizer, tiny_policy):
    budgets = [3, 7, 1, 12, 5, 9]
    r = sample(tiny_policy.eval(), tokenizer, PROMPTS, group_size=2, max_new_tokens=budgets, seed=4)
    for n, budget, reason in zip(r.lengths.tolist(), budgets, r.finish_reason):
        assert n <= budget and (reason == "eos" or n == budget)
    with pytest.raises(ValueError, match="budgets"):
        sample(tiny_policy, tokenizer, PROMPTS, group_size=2, max_new_tokens=[3, 4])


@pytest.mark.parametrize("cut", [1, 9, 20])
def test_continuing_a_prefix_gives_the_rest_of_the_response(tokenizer, tiny_policy, cut):
    """Greedy decoding from prompt + the first `cut` response tokens reproduces the rest of the greedy
    response and its log-probs: a continued row sees exactly what an uninterrupted one saw."""
    policy = tiny_policy.eval()
    whole = sample(policy, tokenizer, PROMPTS, max_new_tokens=30, temperature=0)
    prefixes = [whole.response_ids[i, :cut].tolist() for i in range(len(PROMPTS))]
    rest = sample(policy, tokenizer, PROMPTS, max_new_tokens=30 - cut, temperature=0, prefixes=prefixes)
    for i in range(len(PROMPTS)):
        n = int(whole.lengths[i])
        assert rest.response_ids[i, : n - cut].tolist() == whole.response_ids[i, cut:n].tolist()
        assert torch.allclose(rest.logprobs[i, : n - cut], whole.logprobs[i, cut:n], atol=1e-5)
    with pytest.raises(ValueError, match="prefixes"):
        sample(policy, tokenizer, PROMPTS, group_size=2, prefixes=prefixes)
