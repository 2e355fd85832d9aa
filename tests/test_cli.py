import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from kimi_mini.cli import main
from kimi_mini.rundir import sha256_of
from kimi_mini.warmup import SHIPPED_DIR


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
    assert f"no policy at {tmp_path / 'missing'}: it does not exist" in capsys.readouterr().err
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
    assert out["held_out_accuracy"] == [
        dict(iterations_done=n, accuracy=json.loads(line)["eval_accuracy"])
        for n, line in enumerate((tmp_path / "metrics.jsonl").read_text().splitlines(), start=1)
    ]  # each accuracy with the iterations done when it was measured
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
    err = capsys.readouterr().err
    assert "loss = 'omd' there, 'rest' here" in err and "resume=False" not in err


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


# The real command, as a user runs it: a new process, its exit status and its output.
KIMI_MINI = shutil.which("kimi-mini", path=str(Path(sys.executable).parent))


def kimi_mini(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    command = [KIMI_MINI] if KIMI_MINI else [sys.executable, "-m", "kimi_mini"]
    env = {**os.environ, "KIMI_MINI_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        command + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a command that failed as it should: exit status 2, one line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith(("kimi-mini: error: ", "kimi-mini ")), result.stderr[-2000:]
    assert not any(line.startswith("kimi-mini: error") for line in lines[:-1])
    return lines[-1]


SMALL_RUN = ["--prompts-per-iteration", "1", "--group-size", "2", "--max-new-tokens", "8", "--eval-problems", "1"]


def test_bad_flags_are_one_line_errors_before_torch_loads():
    cases = {
        ("evaluate", "--n", "0"): "argument --n: 0 is invalid: it must be at least 1",
        ("evaluate", "--n", "-5"): "argument --n: -5 is invalid: it must be at least 1",
        ("warmup", "--out", "x", "--steps", "0"): "argument --steps: 0 is invalid",  # not the full 3,000 steps
        ("warmup", "--preset", "cpu-small"): "the following arguments are required: --out",
        ("train", "--out", "x", "--tau", "0"): "RLConfig.tau = 0.0 is invalid",
        ("train", "--out", "x", "--group-size", "1", "--loss", "grpo"): "group_size = 1 is invalid with loss = 'grpo'",
    }
    for args, expected in cases.items():
        assert expected in one_line_error(kimi_mini(*args)), args
    probe = (
        "import sys; from kimi_mini.cli import main; "
        "codes = [main(['train', '--out', 'x', '--lr', '-1']), main(['warmup', '--preset', 'huge', '--out', 'x'])]; "
        "print(codes, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "[2, 2] False"  # rejected without importing torch (4-8 s)


def test_no_command_writes_into_the_shipped_checkpoints(tmp_path):
    before = {p: sha256_of(p) for p in SHIPPED_DIR.rglob("*") if p.is_file()}
    shipped = SHIPPED_DIR / "warmup-cpu-tiny"
    err = one_line_error(
        kimi_mini("warmup", "--out", shipped, "--steps", "2", "--n-eval", "4", "--preset", "cpu-small")
    )
    assert "inside the shipped checkpoints" in err and "never overwrite" in err
    err = one_line_error(
        kimi_mini("warmup", "--out", shipped, "--steps", "2", "--preset", "cpu-small", "--replace-shipped")
    )
    assert "replaces the shipped warm-up of preset 'cpu-small'" in err
    assert "never overwrite" in one_line_error(kimi_mini("train", "--out", SHIPPED_DIR / "run", *SMALL_RUN))
    assert "never overwrite" in one_line_error(kimi_mini("recipe", "--out", SHIPPED_DIR))
    assert {p: sha256_of(p) for p in SHIPPED_DIR.rglob("*") if p.is_file()} == before


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.1)


def test_one_writer_per_run_directory_and_a_killed_run_leaves_nothing_behind(tmp_path):
    run = tmp_path / "run"
    command = [KIMI_MINI] if KIMI_MINI else [sys.executable, "-m", "kimi_mini"]
    env = {**os.environ, "KIMI_MINI_THREADS": "1"}
    first = subprocess.Popen(
        [*command, "train", "--out", str(run), "--iterations", "500", "--quiet", *SMALL_RUN],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        _wait_for(run / "checkpoint.json", first)
        second = kimi_mini("train", "--out", run, "--resume", "--iterations", "500", "--quiet", *SMALL_RUN)
        err = one_line_error(second)
        assert f"{run} is in use by pid {first.pid} on host {socket.gethostname()}" in err
    finally:
        first.kill()  # SIGKILL: no cleanup of its own
        first.wait()
    assert (run / ".kimi-mini.lock").exists()
    (run / ".tmpAbC123").write_bytes(b"\0" * 1000)  # what safetensors leaves when killed mid-write
    (run / f".metrics.jsonl.{first.pid}.tmp").write_text("partial")
    done = json.loads((run / "checkpoint.json").read_text())["iteration"] + 1
    resumed = kimi_mini("train", "--out", run, "--resume", "--iterations", done + 1, *SMALL_RUN)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["iterations"] == done + 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # lock released, leftovers gone
    assert "Loading weights" not in resumed.stderr and "Writing model shards" not in resumed.stderr
    assert "RL:" in resumed.stderr  # the progress bar is ours
    for weights in [*run.glob("policy-*.safetensors"), run / "policy" / "model.safetensors"]:
        assert weights.stat().st_mode & 0o777 == 0o644, weights


def test_damaged_checkpoints_and_missing_policies_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIMI_MINI_THREADS", "1")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", "--iterations", "1", *SMALL_RUN]) == 0
    (weights,) = run.glob("policy-*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    err = one_line_error(kimi_mini("train", "--out", run, "--resume", "--iterations", "2", *SMALL_RUN))
    assert f"{weights} is damaged: its SHA-256 is" in err
    checkpoint = run / "checkpoint.json"
    checkpoint.write_text(checkpoint.read_text()[:500])
    err = one_line_error(kimi_mini("train", "--out", run, "--resume", "--iterations", "2", *SMALL_RUN))
    assert f"{checkpoint} is damaged (not valid JSON" in err
    (tmp_path / "runs").mkdir()
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    (pickled / "config.json").write_text("{}")
    err = one_line_error(kimi_mini("evaluate", "--policy", "runs/nope", "--n", "2", cwd=tmp_path))
    assert err.endswith("no policy at runs/nope: it does not exist")  # a missing path, not a hub name
    err = one_line_error(kimi_mini("evaluate", "--policy", "nobody/nothing", "--n", "2", cwd=tmp_path))
    assert "nobody/nothing is not a local directory, and loading it from the Hugging Face hub failed" in err
    err = one_line_error(kimi_mini("evaluate", "--policy", pickled, "--n", "2"))
    assert "holds pytorch_model.bin but no model.safetensors" in err and "pickle" in err
    assert "warmup --out" not in err


def test_settings_that_would_destroy_a_run_are_refused_warned_or_stopped(tmp_path):
    err = one_line_error(
        kimi_mini("train", "--out", tmp_path / "big", "--prompts-per-iteration", 65536, "--group-size", 1024)
    )
    assert re.search(r"need at least [\d.]+ GiB on cpu to sample \(65536 prompts x 1024 responses", err)
    assert not (tmp_path / "big").exists()
    collapse = ["--lr", "1", "--iterations", "3", "--eval-every", "1", "--eval-problems", "64", "--quiet"]
    result = kimi_mini("train", "--out", tmp_path / "lr", *collapse, "--max-new-tokens", "96", "--group-size", "8")
    assert result.stderr.startswith("kimi-mini: warning: lr = 1 is 10000 times the cpu-tiny preset's 0.0001")
    err = one_line_error(result)
    assert re.search(r"collapsed: held-out accuracy fell to 0 at iteration \d after 0\.\d\d", err)
    assert "--resume --collapse-accuracy 0" in err
    assert (tmp_path / "lr" / "checkpoint.json").exists() and (tmp_path / "lr" / "metrics.jsonl").exists()
    result = kimi_mini(
        "train",
        "--out",
        tmp_path / "g1",
        "--group-size",
        "1",
        "--iterations",
        "1",
        "--quiet",
        *SMALL_RUN[:2],
        *SMALL_RUN[4:],
    )
    assert result.returncode == 0 and "kimi-mini: warning: group_size = 1 with loss = 'omd'" in result.stderr


def test_evaluate_shows_progress_and_plot_offers_a_small_html(tmp_path):
    result = kimi_mini("evaluate", "--n", "4", "--max-new-tokens", "8")
    assert result.returncode == 0 and json.loads(result.stdout)["all"]["n"] == 4
    assert "sampling: 100%" in result.stderr and "4/4" in result.stderr and "Loading weights" not in result.stderr
    run = tmp_path / "run"
    run.mkdir()
    rows = [dict(iteration=i, reward=0.5, kl_prev=0.01, **({"eval_accuracy": 0.5} if i % 2 else {})) for i in range(4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = kimi_mini("plot", run, "--out", run / "m.html", "--plotly-js", "cdn")
    assert result.returncode == 0 and (run / "m.html").stat().st_size < 100_000
    assert "https://cdn.plot.ly/" in (run / "m.html").read_text()
