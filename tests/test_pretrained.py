"""The pretrained-model path (chapter 9's Colab run) on a local stand-in saved in the hub's format."""

import json

import pytest
import torch

from kimi_mini.cli import main
from kimi_mini.config import RLConfig
from kimi_mini.policy import load_policy
from kimi_mini.pretrained import colab_train_command, save_stand_in_model
from kimi_mini.tasks import make_problems, policy_prompts
from kimi_mini.train import train_rl
from kimi_mini.warmup import load_warmup_policy


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return save_stand_in_model(tmp_path_factory.mktemp("stand-in"))


def test_the_stand_in_loads_like_a_hub_chat_model(stand_in):
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in stand_in.iterdir()
    }
    model, tokenizer = load_policy(stand_in)
    assert (
        type(model).__name__ == "Qwen2ForCausalLM"
        and json.loads((stand_in / "config.json").read_text())["model_type"] == "qwen2"
    )
    problem = make_problems(1, seed=3)[0]
    (prompt,) = policy_prompts([problem], tokenizer, "chat")
    a, b, c = problem.numbers
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert f"numbers {a}, {b} and {c}" in prompt and f"to make {problem.target}." in prompt
    ids = tokenizer(prompt)["input_ids"]
    assert tokenizer.decode(ids) == prompt and tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id


def test_chat_prompts_need_a_chat_template():
    _, tokenizer = load_warmup_policy()
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        policy_prompts(make_problems(1, seed=0), tokenizer, "chat")
    with pytest.raises(ValueError, match="guess_filter"):
        RLConfig(prompt_style="chat", sampling="uniform", guess_filter=True)


def test_rl_runs_on_the_stand_in_with_chat_prompts_partial_rollouts_and_micro_batches(stand_in, tmp_path):
    model, tokenizer = load_policy(stand_in)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = RLConfig(
        iterations=2,
        prompts_per_iteration=2,
        group_size=2,
        max_new_tokens=12,
        eval_problems=2,
        eval_every=1,
        prompt_style="chat",
        partial_rollouts=True,
        segment_tokens=6,
        micro_batch_groups=1,
        lr=1e-3,
    )
    history = train_rl(model, tokenizer, cfg, tmp_path, progress=False)
    assert len(history) == 2 and all("eval_accuracy" in row for row in history)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_cli_trains_a_pretrained_policy_with_the_gpu_preset(stand_in, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    small = "--iterations 1 --prompts-per-iteration 2 --group-size 2 --max-new-tokens 8 --eval-problems 2"
    command = colab_train_command(out=str(tmp_path / "run"), model=str(stand_in))
    assert command.startswith("kimi-mini train ") and "--prompt-style chat" in command
    argv = command.split()[1:] + small.split() + ["--dtype", "float32", "--quiet"]  # later flags win
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["iterations"] == 1 and (tmp_path / "run" / "policy" / "model.safetensors").exists()
    saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["config"]
    assert saved["prompt_style"] == "chat" and saved["micro_batch_groups"] == 1 and saved["segment_tokens"] == 512


def test_the_cli_evaluates_a_chat_model(stand_in, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    args = ["evaluate", "--policy", str(stand_in), "--prompt-style", "chat", "--n", "3", "--max-new-tokens", "6"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["all"]["n"] == 3
    assert main(["evaluate", "--prompt-style", "chat", "--n", "1"]) == 2  # the tiny policy has no chat template
    assert "chat template" in capsys.readouterr().err
