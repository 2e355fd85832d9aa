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
    assert main(args + ["--iterations", "2"]) == 2  # no silent resume
    assert "pass --resume" in capsys.readouterr().err
    assert main(args + ["--iterations", "2", "--resume"]) == 0  # one more iteration
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
    assert main(["train", "--out", str(tmp_path), *small, "--eval-problems", "1", "--loss", "rest", "--resume"]) == 2
    assert "loss = 'omd' there, 'rest' here" in capsys.readouterr().err


def test_train_reads_a_config_file_and_plot_draws_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    config = tmp_path / "run.json"
    settings = dict(prompts_per_iteration=2, group_size=2, max_new_tokens=16, eval_problems=2, iterations=3)
    config.write_text(json.dumps({**settings, "length_penalty": 0.5, "eval_every": 2}))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--quiet", "--config", str(config), "--iterations", "2"]) == 0
    saved = json.loads((out / "checkpoint.json").read_text())["config"]
    assert saved["length_penalty"] == 0.5 and saved["iterations"] == 2  # the flag beat the file
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    png = out / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(capsys.readouterr().out)["iterations"] == 2
    assert main(["plot", str(out), "--out", str(tmp_path / "m.html")]) == 0
    html = (tmp_path / "m.html").read_text()
    assert '"name":"accuracy"' in html and '"name":"eval_accuracy"' in html and "Plotly.newPlot" in html


def test_config_file_and_plot_errors_are_clear(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"iterations": 2, "learning_rate": 0.1}))
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    assert "unknown RLConfig field(s) ['learning_rate']" in capsys.readouterr().err
    bad.write_text("{iterations: 2")
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(tmp_path / "none.json")]) == 2
    assert "no config file" in capsys.readouterr().err
    bad.write_text(json.dumps({"tau": -1}))
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    assert "RLConfig.tau" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"iteration": 0, "reward": 0.5}) + "\n")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "m.svg")]) == 2
    assert "must end in .png or .html" in capsys.readouterr().err


def test_train_presets(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    assert main(["train", "--out", str(tmp_path / "g"), "--preset", "gpu"]) == 2
    assert "kimi-mini warmup --preset gpu" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "g"), "--preset", "huge"]) == 2
    assert "preset = 'huge' is invalid" in capsys.readouterr().err
    small = ["--quiet", "--prompts-per-iteration", "1", "--group-size", "2", "--max-new-tokens", "8"]
    assert main(["train", "--out", str(tmp_path / "s"), "--preset", "cpu-small", *small, "--iterations", "1"]) == 0
    saved = json.loads((tmp_path / "s" / "policy" / "config.json").read_text())
    assert saved["hidden_size"] == 96  # the shipped cpu-small warm-up was the starting point
