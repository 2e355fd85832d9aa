"""The shipped warm-up policy: present, intact, loadable, and in the accuracy band the book relies on."""

import json

import pytest
import torch

from kimi_mini.config import get_preset
from kimi_mini.policy import count_parameters
from kimi_mini.warmup import WARMUP_DIR, load_warmup_policy, sha256_of

METRICS = json.loads((WARMUP_DIR / "metrics.json").read_text())


def test_weights_match_the_recorded_hash():
    assert sha256_of(WARMUP_DIR / "model.safetensors") == METRICS["sha256"]


def recorded_config_matches(recorded: dict, preset: str) -> bool:
    """The settings in a policy's metrics.json are the preset's; a field added after the policy was
    trained (TaskConfig.search_style) is absent there and must be at its default, which is what ran."""
    from dataclasses import asdict

    expected = json.loads(json.dumps(asdict(get_preset(preset))))
    defaults = json.loads(json.dumps(asdict(get_preset("cpu-tiny"))))
    for part, values in expected.items():
        for key, value in values.items():
            if recorded[part].get(key, defaults[part][key]) != value:
                return False
    return all(set(recorded[part]) <= set(expected[part]) for part in recorded)


def test_recorded_settings_are_the_cpu_tiny_preset():
    assert recorded_config_matches(METRICS["config"], "cpu-tiny")
    assert not recorded_config_matches(METRICS["config"], "cpu-small")


@pytest.mark.parametrize("preset", ["cpu-tiny-search-only", "cpu-tiny-first-candidate", "cpu-tiny-short-cot"])
def test_the_control_warmups_of_chapter_5_ship_with_their_presets(preset):
    """Chapter 5's warm-ups without guesses: their recorded settings, weights and behaviour."""
    from kimi_mini.rundir import SHIPPED_WARMUPS

    path = SHIPPED_WARMUPS[preset]
    metrics = json.loads((path / "metrics.json").read_text())
    assert recorded_config_matches(metrics["config"], preset)
    assert sha256_of(path / "model.safetensors") == metrics["sha256"]
    ev = metrics["eval"]["all"]
    assert ev["searched"] == 1.0  # no bare guesses left
    if preset == "cpu-tiny-first-candidate":  # one candidate, then the answer: about a guess's accuracy
        assert ev["mean_tokens"] < 40 and ev["accuracy"] < 0.2
    elif preset == "cpu-tiny-short-cot":  # one line, the one that hits: mostly right, and short
        assert ev["mean_tokens"] < 40 and ev["accuracy"] > 0.8
    else:  # every response searches to the end, as the shipped warm-up's searches do
        assert ev["accuracy"] > 0.85


def test_loads_as_a_policy():
    model, tokenizer = load_warmup_policy()
    assert count_parameters(model) == METRICS["parameters"] == 660_864
    assert not model.training
    ids = tokenizer(["4 3 5 -> 17\n"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_accuracy_leaves_room_for_rl():
    ev = METRICS["eval"]
    assert 0.2 <= ev["all"]["accuracy"] <= 0.7
    assert ev["hard"]["accuracy"] < ev["easy"]["accuracy"]
    assert ev["hard"]["mean_tokens"] > ev["easy"]["mean_tokens"]


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make warmup"):  # a shipped one: how to regenerate it
        load_warmup_policy(path=WARMUP_DIR.with_name("warmup-missing"))
    with pytest.raises(FileNotFoundError, match="no policy at .*: it does not exist"):
        load_warmup_policy(path=tmp_path / "missing")
    with pytest.raises(ValueError, match=r"holds no model.safetensors \(found: nothing\)"):
        load_warmup_policy(path=tmp_path)


def test_the_warmup_needs_an_explicit_destination():
    from kimi_mini.warmup import train_warmup_policy

    with pytest.raises(ValueError, match="needs out_dir"):
        train_warmup_policy()
    with pytest.raises(ValueError, match="never overwrite"):
        train_warmup_policy(out_dir=WARMUP_DIR)
