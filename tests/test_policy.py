import json

import pytest
import torch

from kimi_mini.config import ModelConfig
from kimi_mini.policy import build_policy, count_parameters, load_policy, save_policy


def test_cpu_tiny_size(tokenizer):
    model = build_policy(ModelConfig(), tokenizer)
    assert 600_000 < count_parameters(model) < 700_000  # 0.66M, tied embeddings counted once
    assert model.config.tie_word_embeddings


def test_save_load_round_trip(tmp_path, tokenizer, tiny_policy):
    save_policy(tiny_policy, tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    model, tok = load_policy(tmp_path)
    ids = tokenizer(["4 3 5 -> 17\n"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, tiny_policy.eval()(ids).logits)
    assert tok.padding_side == "left" and tok.pad_token_id == tokenizer.pad_token_id


def test_load_refuses_pickled_weights(tmp_path, tokenizer, tiny_policy):
    tiny_policy.save_pretrained(tmp_path, safe_serialization=False)
    tokenizer.save_pretrained(tmp_path)
    for f in tmp_path.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(OSError):
        load_policy(tmp_path)


def test_load_does_not_run_remote_code(tmp_path, tokenizer, tiny_policy):
    save_policy(tiny_policy, tokenizer, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    config["model_type"] = "evil-custom"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    # Without trust_remote_code the custom architecture is refused (ValueError); evil.py never runs
    # (it would raise SystemExit, which pytest.raises(ValueError) does not catch).
    with pytest.raises(ValueError):
        load_policy(tmp_path)
