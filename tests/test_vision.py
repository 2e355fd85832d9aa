import json

import pytest
import torch

from kimi_mini import vision
from kimi_mini.config import RLConfig, get_preset, get_rl_preset
from kimi_mini.policy import load_local_policy, save_policy
from kimi_mini.rollout import input_only_tokens, sample, token_logprobs
from kimi_mini.tasks import Problem, make_problems, prompt_text
from kimi_mini.train import heldout_outcomes, train_rl

PROBLEM = Problem((4, 3, 5), 17)
# The shipped joint warm-up on 64 problems (seed 99), measured: greedy read lines right 1.000 (rendered) and
# 0.812 (dots); one sample each at 256 tokens right 0.453 (text), 0.500 (rendered), 0.281 (dots). Floors
# about three binomial standard deviations (0.06) below.
READ_FLOOR = {"rendered": 0.9, "dots": 0.6}
ACCURACY_FLOOR = {"text": 0.25, "rendered": 0.3, "dots": 0.1}


@pytest.fixture
def vision_policy(tiny_policy, tokenizer):
    return vision.build_vision_policy(tiny_policy, tokenizer, vision.VisionModelConfig(hidden_size=16, num_heads=2))


def test_glyphs_are_the_5x7_digits_and_other_characters_are_refused():
    assert vision.glyph("1").shape == (7, 5)
    assert int(vision.glyph("8").sum()) == 17 and int(vision.glyph("1").sum()) == 10  # ink pixels of two glyphs
    assert len({tuple(vision.glyph(d).flatten().tolist()) for d in "0123456789"}) == 10  # all distinct
    with pytest.raises(ValueError, match="digits 0-9"):
        vision.glyph("a")


def test_problem_images_are_fixed_by_problem_kind_and_seed_and_show_the_numbers():
    a = vision.problem_image(PROBLEM, "rendered", seed=3)
    assert a.shape == (1, vision.IMAGE_SIZE, vision.IMAGE_SIZE)
    assert torch.equal(a, vision.problem_image(PROBLEM, "rendered", seed=3))  # the same image every time
    assert not torch.equal(a, vision.problem_image(PROBLEM, "rendered", seed=4))  # other noise and offsets
    assert not torch.equal(a, vision.problem_image(PROBLEM, "dots", seed=3))
    dots = vision.problem_image(Problem((2, 5, 0), 10), "dots", seed=0)[0]  # (H, W)
    cells = [dots[: vision.CELL, c * vision.CELL : (c + 1) * vision.CELL] for c in range(3)]
    ink = [float(cell.sum()) for cell in cells]  # 4 pixels per 2x2 dot, plus noise of sd 0.25 * 8 = 2
    assert all(abs(i - 4 * n) < 6 for i, n in zip(ink, (2, 5, 0)))  # 2 dots, 5 dots, none
    with pytest.raises(ValueError, match="kind = 'photo'"):
        vision.problem_image(PROBLEM, "photo")
    with pytest.raises(ValueError, match="does not fit"):
        vision.problem_image(Problem((4, 3, 5), 1000), "rendered")


def test_modalities_take_turns_and_text_prompts_stay_text(tokenizer):
    assert vision.modalities_of("joint", 5) == ["text", "rendered", "dots", "text", "rendered"]
    assert vision.modalities_of("image", 3) == ["rendered", "dots", "rendered"]
    with pytest.raises(ValueError, match="modality = 'audio'"):
        vision.modalities_of("audio", 2)
    problems = make_problems(3, seed=0)
    prompts, images = vision.policy_inputs(problems, tokenizer, mix="text")
    assert prompts == [prompt_text(p) for p in problems] and images is None
    prompts, images = vision.policy_inputs(problems, tokenizer, mix="joint", seed=1)
    assert prompts[0] == prompt_text(problems[0]) and prompts[1] == vision.image_prompt() and images[0] is None
    assert torch.equal(images[2], vision.problem_image(problems[2], "dots", seed=1))


def test_the_vision_policy_reads_text_exactly_as_its_language_model(tiny_policy, tokenizer, vision_policy):
    assert tokenizer(vision.image_prompt())["input_ids"].count(vision_policy.config.image_token_index) == 9
    ids = tokenizer([prompt_text(PROBLEM) + "4*3=12"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        text = tiny_policy(input_ids=ids).logits
        both = vision_policy(input_ids=ids).logits[..., : text.shape[-1]]
    assert torch.allclose(text, both, atol=1e-5)  # the same weights; one more token (<image>) in the vocabulary
    emb = vision_policy.get_input_embeddings().weight
    assert emb.data_ptr() == vision_policy.get_output_embeddings().weight.data_ptr()  # tied


def test_sampled_log_probs_match_the_training_forward_pass_on_mixed_batches(tokenizer, vision_policy):
    problems = make_problems(6, seed=1)
    prompts, images = vision.policy_inputs(problems, tokenizer, mix="joint", seed=2)
    rollouts = sample(vision_policy, tokenizer, prompts, group_size=2, max_new_tokens=24, seed=0, images=images)
    assert rollouts.has_image.tolist() == [k != "text" for k in vision.modalities_of("joint", 6) for _ in range(2)]
    image_id = input_only_tokens(vision_policy)[0]
    assert not (rollouts.response_ids[rollouts.mask] == image_id).any()  # <image> is never written
    with torch.no_grad():
        again = token_logprobs(vision_policy, rollouts, length_buckets=3)
    assert torch.allclose(again, rollouts.logprobs, atol=1e-4)
    # the image matters: other pixels, other log-probs on the image rows only
    other = vision.policy_inputs(problems, tokenizer, mix="joint", seed=3)[1]
    moved = sample(vision_policy, tokenizer, prompts, group_size=2, max_new_tokens=24, seed=0, images=other)
    assert rollouts.texts[:2] == moved.texts[:2]  # a text row does not see the others' images
    with pytest.raises(ValueError, match="one .or None. per prompt"):
        sample(vision_policy, tokenizer, prompts, images=images[:2])


def test_save_and_load_round_trip_as_a_vision_language_model(tmp_path, tokenizer, vision_policy):
    save_policy(vision_policy, tokenizer, tmp_path / "vlm")
    assert "vision_config" in json.loads((tmp_path / "vlm" / "config.json").read_text())
    loaded, tok = load_local_policy(tmp_path / "vlm")
    assert type(loaded).__name__ == "LlavaForConditionalGeneration" and len(tok) == len(tokenizer)
    prompts, images = vision.policy_inputs([PROBLEM], tok, mix="dots")
    a = sample(vision_policy, tokenizer, prompts, max_new_tokens=16, seed=0, images=images)
    b = sample(loaded, tok, prompts, max_new_tokens=16, seed=0, images=images)
    assert a.texts == b.texts and torch.allclose(a.logprobs, b.logprobs, atol=1e-6)


def test_error_kinds_read_the_first_line_of_an_image_response():
    right = vision.image_response(PROBLEM, "4*3=12: 12+5=17 vs 17!\nanswer (4*3)+5")
    assert vision.read_problem(right) == PROBLEM
    assert vision.error_kind(PROBLEM, right, 1) == "correct"
    misread = right.replace("4 3 5 -> 17", "4 3 6 -> 17")
    assert vision.read_problem(misread) == Problem((4, 3, 6), 17)
    assert vision.error_kind(PROBLEM, misread, 0) == "perception"
    assert vision.error_kind(PROBLEM, "answer (4*3)+5", 0) == "unread"  # no read line: not counted as a misreading
    wrong_sum = vision.image_response(PROBLEM, "answer (4+3)+5")
    assert vision.error_kind(PROBLEM, wrong_sum, 0) == "reasoning"  # read right, answered wrong


def test_joint_batches_carry_one_image_per_image_row(tokenizer, vision_policy):
    image_id = vision_policy.config.image_token_index
    batches = vision.joint_batches(tokenizer, 8, seed=0)
    for _ in range(3):
        batch = next(batches)
        rows = int((batch["input_ids"] == image_id).any(dim=1).sum())
        assert rows == (0 if "pixel_values" not in batch else batch["pixel_values"].shape[0])
        assert int((batch["input_ids"] == image_id).sum()) == 9 * rows
    mean = vision.mean_joint_tokens(tokenizer, n=512)
    text_only = vision.mean_joint_tokens(tokenizer, mix="text", n=512)
    assert mean > text_only  # image responses also write the line they read (12 to 13 more tokens)


def test_rl_config_refuses_image_settings_it_cannot_run():
    assert get_rl_preset("cpu-tiny-vision").modality == "joint" and get_preset("cpu-tiny-vision").model.vision
    for bad in (dict(partial_rollouts=True), dict(guess_filter=True, sampling="uniform")):
        with pytest.raises(ValueError, match="modality = 'image'"):
            RLConfig(modality="image", **bad)
    with pytest.raises(ValueError, match="modality"):
        RLConfig(modality="video")


def test_rl_trains_a_vision_policy_on_text_and_images_with_the_one_loop(tmp_path, tiny_policy, tokenizer):
    cfg = RLConfig(
        modality="joint", iterations=2, prompts_per_iteration=3, group_size=2, max_new_tokens=16, eval_problems=3
    )
    with pytest.raises(ValueError, match="needs a vision policy"):
        train_rl(tiny_policy, tokenizer, cfg, tmp_path / "text", progress=False)
    policy = vision.build_vision_policy(tiny_policy, tokenizer, vision.VisionModelConfig(hidden_size=16))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    history = train_rl(policy, tokenizer, cfg, tmp_path / "run", progress=False)
    assert len(history) == 2 and "eval_accuracy" in history[-1]
    changed = {k.split(".")[1] for k, v in policy.state_dict().items() if not torch.equal(v, before[k])}
    assert {"vision_tower", "multi_modal_projector", "language_model"} <= changed  # every part learned
    out = heldout_outcomes(policy, tokenizer, cfg, 4, modality="dots")
    assert set(out["errors"]) <= set(vision.ERROR_KINDS) and len(out["errors"]) == 4
    assert "errors" not in heldout_outcomes(policy, tokenizer, cfg, 4, modality="text")


def test_a_pretrained_llava_runs_the_same_code_through_its_processor(tmp_path):
    """The GPU path (a hub LLaVA by name) exercised on a tiny stand-in saved in the hub's layout."""
    path = vision.save_stand_in(tmp_path / "llava")
    assert {"model.safetensors", "processor_config.json", "config.json"} <= {p.name for p in path.iterdir()}
    policy, tokenizer = vision.load_vision_policy(path)
    assert tokenizer.padding_side == "left" and tokenizer.vision_processor.image_token == vision.IMAGE_TOKEN
    problems = make_problems(4, seed=0)
    prompts, images = vision.policy_inputs(problems, tokenizer, "chat", "joint", seed=0)
    assert [p.count(vision.IMAGE_TOKEN) for p in prompts] == [0, 9, 9, 0]  # expanded as the processor does
    assert images[1].shape == (3, vision.IMAGE_SIZE, vision.IMAGE_SIZE) and images[0] is None
    rollouts = sample(policy, tokenizer, prompts, group_size=2, max_new_tokens=8, seed=0, images=images)
    with torch.no_grad():
        assert torch.allclose(token_logprobs(policy, rollouts), rollouts.logprobs, atol=1e-4)
    cfg = RLConfig(
        modality="joint", prompt_style="chat", iterations=1, prompts_per_iteration=3, group_size=2, max_new_tokens=8
    )
    assert len(train_rl(policy, tokenizer, cfg, tmp_path / "run", progress=False)) == 1
    with pytest.raises(ValueError, match="load_vision_policy"):
        vision.policy_inputs(problems, load_local_policy(path)[1], "chat", "image")


def test_the_shipped_joint_warmup_reads_and_reasons():
    """Chapter 11's vision warm-up: its recorded recipe and hash, its size, and behaviour on every kind."""
    from kimi_mini.rundir import SHIPPED_WARMUPS, sha256_of

    path = SHIPPED_WARMUPS["cpu-tiny-vision"]
    metrics = json.loads((path / "metrics.json").read_text())
    assert sha256_of(path / "model.safetensors") == metrics["sha256"]
    assert metrics["config"]["model"]["vision"] and metrics["read_steps"] == 2 * metrics["config"]["sft"]["steps"]
    assert (path / "model.safetensors").stat().st_size < 4_000_000  # a few MB: measured 3.0 MB
    policy, tokenizer = load_local_policy(path)
    assert vision.is_vision_policy(policy)
    problems = make_problems(64, seed=99)
    cfg = RLConfig(max_new_tokens=256)
    for kind in ("rendered", "dots"):
        share = sum(vision.read_outcomes(policy, tokenizer, problems, kind)) / 64
        assert share > READ_FLOOR[kind], (kind, share)
    for kind, floor in ACCURACY_FLOOR.items():
        assert sum(heldout_outcomes(policy, tokenizer, cfg, 64, modality=kind)["correct"]) / 64 > floor, kind


def test_the_cli_trains_the_joint_recipe_from_its_preset(tmp_path, capsys, monkeypatch):
    from kimi_mini.cli import main

    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    out = tmp_path / "warm"
    assert main(["warmup", "--preset", "cpu-tiny-vision", "--out", str(out), "--steps", "2", "--n-eval", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["eval"]["accuracy"]) == set(vision.KINDS)
    assert json.loads((out / "metrics.json").read_text())["read_steps"] == 4  # two read steps per reason step
    small = ["--iterations", "1", "--prompts-per-iteration", "3", "--group-size", "2", "--max-new-tokens", "16"]
    small += ["--eval-problems", "3", "--quiet"]
    for policy in ([], ["--policy", str(out)]):  # the shipped vision warm-up, then the one just made
        run = tmp_path / f"run{len(policy)}"
        assert main(["train", "--preset", "cpu-tiny-vision", "--out", str(run), *policy, *small]) == 0
        assert json.loads(capsys.readouterr().out)["iterations"] == 1
        config = json.loads((run / "checkpoint.json").read_text())["config"]
        assert config["modality"] == "joint"
        assert vision.is_vision_policy(load_local_policy(run / "policy")[0])
    assert main(["train", "--out", str(tmp_path / "bad"), "--modality", "image", *small]) == 2
    assert "needs a vision policy" in capsys.readouterr().err
