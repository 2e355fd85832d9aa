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
