import dataclasses

import pytest

from kimi_mini.config import PRESETS, Config, ModelConfig, RLConfig, SampleConfig, SFTConfig, TaskConfig, get_preset
from kimi_mini.recipe import Long2ShortConfig, RecipeConfig

# One invalid value per field; the test below fails if a field is added without an entry here.
INVALID = {
    TaskConfig: dict(min_number=-1, max_number=10, guess_fraction=1.5, search_style="beam"),
    ModelConfig: dict(
        hidden_size=4, num_layers=0, num_heads=0, intermediate_size=2, max_positions=8, name_or_path=3, vision="yes"
    ),
    SFTConfig: dict(
        steps=0,
        batch_size=0,
        lr=0.0,
        min_lr=-1e-3,
        warmup_steps=-1,
        weight_decay=2.0,
        grad_clip=0.0,
        seed=-1,
        log_every=0,
    ),
    SampleConfig: dict(max_new_tokens=0, temperature=-0.5, batch_size=0),
    Config: dict(task="easy", model=None, sft=3, sample=SFTConfig()),
    RLConfig: dict(
        iterations=0,
        prompts_per_iteration=0,
        group_size=0,
        max_new_tokens=0,
        temperature=0.0,
        loss="ppo",
        tau=0.0,
        clip_eps=0.0,
        lr=0.0,
        grad_steps=0,
        length_buckets=0,
        eval_every=0,
        eval_problems=0,
        checkpoint_every=0,
        seed=-1,
        partial_rollouts=1,
        segment_tokens=0,
        mask_stale_segments="no",
        wait_for_group="no",
        repeat_times=-1,
        repeat_block=1,
        repeat_penalty=-0.5,
        length_penalty=-1.0,
        length_penalty_warmup=-1,
        overlong_buffer=-1,
        sampling="hard-first",
        pool_size=0,
        curriculum_switch=-1,
        guess_filter="yes",
        prompt_style="markdown",
        modality="video",
        micro_batch_groups=-1,
        collapse_accuracy=1.5,
    ),
    Long2ShortConfig: dict(problems=0, samples=0, steps=0, lr=0.0, batch_size=0, seed=-1),
    RecipeConfig: dict(preset="huge", sft=3, rl=None, long2short=RLConfig(), eval_problems=0),
}


def test_every_field_has_an_invalid_example():
    for cls, examples in INVALID.items():
        assert set(examples) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.parametrize("cls, name, value", [(c, n, v) for c, ex in INVALID.items() for n, v in ex.items()])
def test_invalid_field_is_rejected_with_its_name(cls, name, value):
    with pytest.raises(ValueError) as err:
        cls(**{name: value})
    message = str(err.value)
    assert f"{cls.__name__}.{name}" in message
    assert repr(value) in message
    assert "must be" in message


@pytest.mark.parametrize("cls", list(INVALID))
def test_every_field_has_a_doc(cls):
    for f in dataclasses.fields(cls):
        assert len(f.metadata.get("doc", "")) > 5, f"{cls.__name__}.{f.name} has no doc"
    assert all(f.name in cls.describe() for f in dataclasses.fields(cls))


def test_float_and_bool_are_not_ints():
    with pytest.raises(ValueError, match="SFTConfig.steps"):
        SFTConfig(steps=10.5)
    with pytest.raises(ValueError, match="SFTConfig.lr"):
        SFTConfig(lr=float("nan"))


def test_combinations_are_checked():
    with pytest.raises(ValueError, match="must divide hidden_size"):
        ModelConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ValueError, match="TaskConfig.max_number"):
        TaskConfig(min_number=5, max_number=5)
    with pytest.raises(ValueError, match="SFTConfig.min_lr"):
        SFTConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        get_preset("cpu-tiny", sample=dict(max_new_tokens=500))
    with pytest.raises(ValueError, match="group_size = 1 is invalid with loss = 'grpo'"):
        RLConfig(group_size=1, loss="grpo")


def test_settings_that_waste_a_run_are_named():
    from kimi_mini.config import LR_WARNING_FACTOR, risky_settings

    assert risky_settings(RLConfig()) == [] and risky_settings(RLConfig(lr=1e-3)) == []  # tests use 10x
    assert len(risky_settings(RLConfig(lr=3e-3))) == 1
    for loss in ("omd", "reinforce"):
        (warning,) = risky_settings(RLConfig(group_size=1, loss=loss))
        assert "group_size = 1" in warning and "learns nothing" in warning
    assert risky_settings(RLConfig(group_size=1, loss="rest")) == []  # no baseline to cancel
    (warning,) = risky_settings(RLConfig(lr=1.0))
    assert "lr = 1 is 10000 times the cpu-tiny preset's 0.0001" in warning
    assert risky_settings(RLConfig(lr=LR_WARNING_FACTOR * 1e-4)) == []
    assert risky_settings(RLConfig(lr=1e-6), "gpu") == []  # chapter 9's pretrained model


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid(name):
    cfg = get_preset(name)
    assert isinstance(cfg, Config)


def test_gpu_preset_is_bigger():
    tiny, gpu = get_preset("cpu-tiny"), get_preset("gpu")
    assert gpu.model.hidden_size > tiny.model.hidden_size
    assert gpu.model.max_positions > tiny.model.max_positions
    assert gpu.sample.max_new_tokens > tiny.sample.max_new_tokens


def test_unknown_preset_and_part():
    with pytest.raises(ValueError, match="preset = 'huge'"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown config part"):
        get_preset("cpu-tiny", optimizer=dict(lr=1))


def test_overrides_apply():
    assert get_preset("gpu", sft=dict(steps=7)).sft.steps == 7
    assert get_preset("gpu", sft=dict(steps=7)).sft.batch_size == PRESETS["gpu"]["sft"]["batch_size"]


def test_rl_presets():
    from kimi_mini.config import get_rl_preset

    assert get_rl_preset("cpu-tiny") == RLConfig()
    gpu = get_rl_preset("gpu")
    assert (
        gpu.max_new_tokens > RLConfig().max_new_tokens and gpu.prompts_per_iteration > RLConfig().prompts_per_iteration
    )
    assert get_rl_preset("gpu", loss="grpo").loss == "grpo"
    with pytest.raises(ValueError, match="ModelConfig.max_positions - 16 = 496"):
        get_rl_preset("cpu-tiny", max_new_tokens=600)
    assert get_rl_preset("cpu-tiny", check_positions=False, max_new_tokens=600).max_new_tokens == 600
    with pytest.raises(ValueError, match="preset = 'huge'"):
        get_rl_preset("huge")
