import random

import pytest
import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

from kimi_mini import reward_models as rm
from kimi_mini.policy import build_policy
from kimi_mini.tasks import all_expressions, make_problems, search_trace, verify
from kimi_mini.train import RLConfig, train_rl
from kimi_mini.trl import countdown_reward

SMALL = dict(prompts_per_iteration=4, group_size=4, max_new_tokens=24, eval_every=2, eval_problems=8, grad_steps=2)


def responses(n=200, seed=0):
    """Search traces (right), guesses (mostly wrong), malformed and empty answers, with their problems."""
    rng, problems, texts = random.Random(seed), make_problems(n, seed=seed), []
    for i, p in enumerate(problems):
        kind = i % 4
        if kind == 0:
            texts.append(search_trace(p, rng))
        elif kind == 1:
            texts.append("answer " + rng.choice(all_expressions(p.numbers))[0])
        elif kind == 2:
            texts.append("1+2=3: 3+3=6 vs 6!\nanswer (1+2)+33")
        else:
            texts.append("")
    return problems, texts


def test_the_check_text_verdict_is_always_the_verifiers():
    problems, texts = responses()
    verdicts = [rm.read_verdict(rm.check_text(p, t)) for p, t in zip(problems, texts)]
    assert verdicts == [verify(p, t) for p, t in zip(problems, texts)]
    assert 0 < sum(verdicts) < len(verdicts)


def test_check_text_recomputes_the_answer_in_the_trace_format():
    from kimi_mini.tasks import Problem

    assert rm.check_text(Problem((4, 3, 5), 17), "answer (4*3)+5") == "4*3=12: 12+5=17 vs 17, 345 vs 345 => !"
    assert rm.check_text(Problem((4, 3, 5), 17), "answer (4*3)+4") == "4*3=12: 12+4=16 vs 17, 344 vs 345 => ."
    assert rm.check_text(Problem((4, 3, 5), 17), "no answer") == "=> ."


@pytest.mark.parametrize("text, verdict", [("4=4 => !", 1), ("=> .", 0), ("4*3=12: 12+5", 0), ("=> !!", 0)])
def test_read_verdict_needs_a_complete_verdict(text, verdict):
    assert rm.read_verdict(text) == verdict


def test_classic_rm_starts_from_the_policys_body_and_scores_one_half(tiny_policy, tokenizer):
    classic = rm.build_classic_rm(tiny_policy)
    assert isinstance(classic, LlamaForSequenceClassification) and classic.config.num_labels == 1
    assert all(
        torch.equal(a, b) for a, b in zip(classic.model.state_dict().values(), tiny_policy.model.state_dict().values())
    )
    problems, texts = responses(8)
    assert torch.equal(rm.classic_rewards(classic, tokenizer, problems, texts), torch.full((8,), 0.5))


def test_classic_logits_do_not_depend_on_the_batch(tiny_policy, tokenizer):
    classic = rm.build_classic_rm(tiny_policy)
    torch.nn.init.normal_(classic.score.weight)
    problems, texts = responses(8)
    together = rm.classic_logits(classic, tokenizer, problems, texts)
    alone = torch.cat([rm.classic_logits(classic, tokenizer, [p], [t]) for p, t in zip(problems, texts)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_classic_rm_training_lowers_its_loss_and_round_trips(tiny_policy, tokenizer, tmp_path):
    classic = rm.build_classic_rm(tiny_policy)
    problems, texts = responses(64)
    labels = [verify(p, t) for p, t in zip(problems, texts)]
    losses = rm.train_classic_rm(classic, tokenizer, problems, texts, labels, epochs=4, batch_size=16, lr=3e-3)
    assert losses[-1] < losses[0]
    rm.save_reward_model(classic, tokenizer, tmp_path / "classic")
    loaded, _ = rm.load_reward_model(tmp_path / "classic")
    assert isinstance(loaded, LlamaForSequenceClassification)
    assert torch.equal(
        rm.classic_logits(loaded, tokenizer, problems, texts), rm.classic_logits(classic, tokenizer, problems, texts)
    )


def test_cot_rm_learns_its_check_format_and_round_trips(tiny_policy, tokenizer, tmp_path):
    judge = rm.build_cot_rm(tiny_policy)
    assert all(torch.equal(a, b) for a, b in zip(judge.state_dict().values(), tiny_policy.state_dict().values()))
    problems, texts = responses(64)
    losses = rm.train_cot_rm(judge, tokenizer, problems, texts, epochs=3, batch_size=16, lr=3e-3)
    assert losses[-1] < losses[0]
    judgements = rm.cot_judgements(judge, tokenizer, problems[:8], texts[:8], max_new_tokens=40)
    rewards = rm.cot_rewards(judge, tokenizer, problems[:8], texts[:8])
    assert len(judgements) == 8 and set(rewards.tolist()) <= {0.0, 1.0}
    rm.save_reward_model(judge, tokenizer, tmp_path / "cot")
    loaded, _ = rm.load_reward_model(tmp_path / "cot")
    assert isinstance(loaded, LlamaForCausalLM)
    assert rm.cot_judgements(loaded, tokenizer, problems[:8], texts[:8], max_new_tokens=40) == judgements


def test_reward_functions_have_trls_interface(tiny_policy, tokenizer):
    problems, texts = responses(6)
    columns = dict(numbers=[list(p.numbers) for p in problems], target=[p.target for p in problems])
    for model, name in (
        (rm.build_classic_rm(tiny_policy), "classic_rm_reward"),
        (rm.build_cot_rm(tiny_policy), "cot_rm_reward"),
    ):
        f = rm.reward_function(model, tokenizer)
        values = f(prompts=["x"] * 6, completions=texts, completion_ids=[[1]] * 6, **columns)
        chat = f(prompts=["x"] * 6, completions=[[{"role": "assistant", "content": t}] for t in texts], **columns)
        assert f.__name__ == name and len(values) == 6 and all(isinstance(v, float) for v in values)
        assert values == chat


def test_train_rl_with_the_verifier_as_reward_fn_trains_the_same_policy(tmp_path, tokenizer, tiny_config):
    """reward_fn=None and the verifier passed as a TRL reward function give the same run, bit for bit
    (weights and every logged metric but the timings)."""
    runs = []
    for name, fn in (("plain", None), ("fn", countdown_reward)):
        torch.manual_seed(0)
        policy = build_policy(tiny_config, tokenizer)
        history = train_rl(
            policy, tokenizer, RLConfig(iterations=2, **SMALL), tmp_path / name, progress=False, reward_fn=fn
        )
        runs.append((history, policy.state_dict()))
    (plain, plain_weights), (judged, judged_weights) = runs
    assert all(torch.equal(plain_weights[k], judged_weights[k]) for k in plain_weights)
    timing = {"rollout_seconds", "train_seconds", "tokens_per_second"}
    assert [{k: v for k, v in row.items() if k not in timing} for row in plain] == [
        {k: v for k, v in row.items() if k not in timing} for row in judged
    ]
    assert all(row["accuracy"] == row["reward"] for row in judged)


def test_train_rl_rewards_what_reward_fn_says_and_logs_the_verifier(tmp_path, tiny_policy, tokenizer):
    calls = []

    def always_right(prompts, completions, numbers, target, **kwargs):
        calls.append(len(completions))
        return [1.0] * len(completions)

    history = train_rl(
        tiny_policy, tokenizer, RLConfig(iterations=1, **SMALL), tmp_path, progress=False, reward_fn=always_right
    )
    assert calls == [16] and history[0]["reward"] == 1.0 and history[0]["accuracy"] < 1.0


def test_curation_drops_problems_always_solved_and_guessable():
    counts = torch.tensor([10, 9, 0, 5, 10])
    assert rm.curate(counts, [False, False, False, True, True]) == [False, True, True, False, False]


def test_pass_counts_counts_verified_samples(tiny_policy, tokenizer):
    problems = make_problems(3, seed=0)
    counts = rm.pass_counts(tiny_policy, tokenizer, problems, samples=4)
    assert counts.shape == (3,) and int(counts.min()) >= 0 and int(counts.max()) <= 4


def test_counterfactual_answers_are_right_half_the_time_whatever_the_response():
    rng = random.Random(0)
    problems, texts = responses(400)
    changed = [rm.counterfactual(p, t, rng) for p, t in zip(problems, texts)]
    with_answer = [i for i, t in enumerate(texts) if "answer" in t]
    right = sum(verify(problems[i], changed[i]) for i in with_answer) / len(with_answer)
    # measured 0.61: half right by construction, plus wrong picks that happen to hit (easy problems have many)
    assert 0.5 < right < 0.7
    assert all(changed[i] == texts[i] for i in range(len(texts)) if i not in with_answer)
    traces = [i for i in with_answer if "\n" in texts[i]]
    assert all(changed[i].rsplit("\n", 1)[0] == texts[i].rsplit("\n", 1)[0] for i in traces)  # only the answer


def test_cot_rm_trains_with_counterfactuals(tiny_policy, tokenizer):
    judge = rm.build_cot_rm(tiny_policy)
    problems, texts = responses(32)
    losses = rm.train_cot_rm(judge, tokenizer, problems, texts, epochs=2, batch_size=16, counterfactual_share=0.5)
    assert len(losses) == 2 and all(loss == loss for loss in losses)


def test_the_stored_measurements_hold_per_seed_per_problem_outcomes():
    """kimi_mini/results/reward-models-cpu.json (benchmarks/reward_models.py): 0/1 arrays per seed and
    held-out problem for every judge and every RL run, so intervals can be recomputed."""
    from kimi_mini.results import load_result

    result = load_result("reward-models-cpu")
    seeds, n = [str(s) for s in result["settings"]["seeds"]], result["settings"]["heldout"]
    assert len(seeds) >= 3 and n >= 512
    for seed in seeds:
        judged = result["rms"]["heldout"][seed]
        assert all(len(judged[k]) == n for k in ("verifier", "classic", "cot", "cot_plain"))
        for reward in ("verifier", "classic", "cot"):
            run = result["rl"][reward][seed]
            assert set(run["final"]["verifier"]) <= {0, 1} and len(run["final"]["verifier"]) == n
            assert len(run["history"]) == result["settings"]["iterations"]
        curation = result["curation"][seed]
        assert len(curation["counts"]) == result["settings"]["pool_size"]
        assert all(len(curation["runs"][name]["final"]) == n for name in ("whole", "curated"))
