import json

from kimi_mini.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    assert "torch" in json.loads(capsys.readouterr().out)


def test_warmup_and_evaluate_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    assert main(["warmup", "--out", str(tmp_path), "--steps", "3", "--n-eval", "4"]) == 0
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "metrics.json").exists()
    capsys.readouterr()
    assert main(["evaluate", "--policy", str(tmp_path), "--n", "4", "--max-new-tokens", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["all"]["n"] == 4


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["warmup", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "preset = 'huge' is invalid" in capsys.readouterr().err
    assert main(["evaluate", "--policy", str(tmp_path / "missing")]) == 2
    assert "make warmup" in capsys.readouterr().err
    assert main(["evaluate", "--temperature", "-1", "--n", "1"]) == 2
    assert "SampleConfig.temperature" in capsys.readouterr().err


def test_train_runs_resumes_and_saves_a_policy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    args = ["train", "--out", str(tmp_path), "--quiet", "--prompts-per-iteration", "2", "--group-size", "2"]
    args += ["--max-new-tokens", "16", "--eval-problems", "2", "--grad-steps", "1", "--loss", "grpo"]
    assert main(args + ["--iterations", "1"]) == 0
    capsys.readouterr()
    assert main(args + ["--iterations", "2"]) == 0  # resumes: one more iteration
    out = json.loads(capsys.readouterr().out)
    assert out["iterations"] == 2 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["evaluate", "--policy", out["policy"], "--n", "2", "--max-new-tokens", "8"]) == 0


def test_train_rejects_bad_settings_and_mismatched_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    assert main(["train", "--out", str(tmp_path), "--tau", "0"]) == 2
    assert "RLConfig.tau" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--loss", "ppo"]) == 2
    assert "RLConfig.loss" in capsys.readouterr().err
    small = [
        "--quiet",
        "--prompts-per-iteration",
        "1",
        "--group-size",
        "2",
        "--max-new-tokens",
        "8",
        "--iterations",
        "1",
    ]
    assert main(["train", "--out", str(tmp_path), *small, "--eval-problems", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path), *small, "--eval-problems", "1", "--loss", "rest"]) == 2
    assert "loss = 'omd' there, 'rest' here" in capsys.readouterr().err
