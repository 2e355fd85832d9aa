import json

import pytest

from kimi_mini.cli import main
from kimi_mini.recipe import RECIPE_RL, recipe_config, run_recipe
from kimi_mini.warmup import WARMUP_DIR

TINY = dict(
    rl=dict(
        iterations=3,
        prompts_per_iteration=4,
        group_size=4,
        max_new_tokens=96,
        eval_every=2,
        eval_problems=8,
        length_penalty_warmup=1,
        pool_size=32,
        segment_tokens=32,
    ),
    long2short=dict(problems=16, samples=4, steps=2, batch_size=8),
    eval_problems=16,
)


def test_recipe_config_switches_everything_on_and_names_bad_fields():
    cfg = recipe_config("cpu-tiny")
    assert cfg.rl.partial_rollouts and cfg.rl.sampling == "prioritized" and cfg.rl.length_penalty > 0
    assert cfg.rl.length_penalty_warmup == RECIPE_RL["length_penalty_warmup"] and cfg.sft.steps == 3000
    assert recipe_config("gpu").rl.max_new_tokens == 1536
    with pytest.raises(ValueError, match="unknown RLConfig field"):
        recipe_config(rl=dict(learning_rate=1))
    with pytest.raises(ValueError, match="unknown recipe part"):
        recipe_config(ppo=dict())
    with pytest.raises(ValueError, match="Long2ShortConfig.samples"):
        recipe_config(long2short=dict(samples=0))
    with pytest.raises(ValueError, match="preset = 'huge'"):
        recipe_config("huge")
    with pytest.raises(ValueError, match="rl.prompt_style = 'chat'"):
        recipe_config(rl=dict(prompt_style="chat"))
    assert recipe_config("gpu").task.max_number == 9  # RL and evaluation use the preset's problems too


def test_the_recipe_runs_every_stage_resumes_and_protects_its_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    cfg = recipe_config("cpu-tiny", **TINY)
    result = run_recipe(cfg, tmp_path, warmup_from=WARMUP_DIR, progress=False)
    assert [row["stage"] for row in result["stages"]] == ["warmup", "rl", "long2short"]
    assert all(0 <= row["eval_accuracy"] <= 1 and row["eval_tokens"] > 0 for row in result["stages"])
    shipped = json.loads((WARMUP_DIR / "metrics.json").read_text())["train"]["seconds"]
    assert result["stages"][0]["seconds"] == shipped  # the copied warm-up keeps its recorded time
    assert (tmp_path / "rl" / "policy" / "model.safetensors").exists()
    assert (tmp_path / "long2short" / "model.safetensors").exists()
    assert json.loads((tmp_path / "results.json").read_text()) == result
    assert run_recipe(cfg, tmp_path, resume=True, progress=False) == result  # nothing redone
    with pytest.raises(ValueError, match="resume=True"):
        run_recipe(cfg, tmp_path, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["rl"]["micro_batch_groups"]  # as written before that setting existed: still the same run
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert run_recipe(cfg, tmp_path, resume=True, progress=False) == result
    other = recipe_config("cpu-tiny", **{**TINY, "eval_problems": 8})
    with pytest.raises(ValueError, match="another config"):
        run_recipe(other, tmp_path, resume=True, progress=False)


def test_an_interrupted_rl_stage_resumes(tmp_path, monkeypatch):
    from dataclasses import replace

    import kimi_mini.recipe as recipe

    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    cfg = recipe_config("cpu-tiny", **TINY)
    full = run_recipe(cfg, tmp_path / "a", warmup_from=WARMUP_DIR, progress=False)
    real_train_rl = recipe.train_rl

    def killed_after_two_iterations(policy, tokenizer, rl_cfg, run_dir, **kwargs):
        real_train_rl(policy, tokenizer, replace(rl_cfg, iterations=2), run_dir, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "train_rl", killed_after_two_iterations)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(cfg, tmp_path / "b", warmup_from=WARMUP_DIR, progress=False)
    monkeypatch.setattr(recipe, "train_rl", real_train_rl)
    assert not (tmp_path / "b" / "rl" / "stage.json").exists() and not (tmp_path / "b" / "long2short").exists()
    resumed = run_recipe(cfg, tmp_path / "b", resume=True, progress=False)
    keys = ("eval_accuracy", "eval_tokens")
    assert [[row[k] for k in keys] for row in resumed["stages"]] == [[row[k] for k in keys] for row in full["stages"]]
    history = [json.loads(line) for line in (tmp_path / "b" / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in history] == [0, 1, 2]


def test_recipe_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    args = ["recipe", "--out", str(out), "--config", str(config), "--shipped-warmup", "--quiet", "--iterations", "2"]
    args += ["--sft-steps", "5"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["stage"] for row in rows] == ["warmup", "rl", "long2short"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["rl"]["iterations"] == 2 and saved["sft"]["steps"] == 5  # the flags beat the file
    assert main(args) == 2 and "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(["recipe", "--out", str(out), "--preset", "gpu", "--shipped-warmup"]) == 2
    assert "--preset cpu-tiny" in capsys.readouterr().err
