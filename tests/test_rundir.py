import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from kimi_mini.policy import load_policy, save_policy
from kimi_mini.rundir import (
    LOCK_NAME,
    check_checksums,
    public_file,
    remove_leftovers,
    run_lock,
    sha256_of,
    write_atomically,
)
from kimi_mini.warmup import SHIPPED_DIR, check_writable, load_warmup_policy


def _hold(run_dir):
    """A process that holds ``run_dir`` until it is killed; returns it once the lock is taken."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from kimi_mini.rundir import run_lock
        with run_lock({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    holder = _hold(tmp_path / "run")
    try:
        with pytest.raises(ValueError) as err, run_lock(tmp_path / "run"):
            pass
        message = str(err.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    lock = tmp_path / "run" / LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == holder.pid  # the killed holder's lock file is left behind
    with run_lock(tmp_path / "run"):  # ... and taken over: its process is gone
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with run_lock(tmp_path / "run"):  # re-entrant within one process
            pass
        assert lock.exists()
    assert not lock.exists()


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps(dict(pid=int(dead.stdout), host=socket.gethostname(), since="x")))
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_refused_run_leaves_no_empty_directory(tmp_path):
    with pytest.raises(ValueError, match="refused"), run_lock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
        raise ValueError("refused before writing anything")  # as a settings check inside the lock does
    assert not (tmp_path / "new").exists()
    (tmp_path / "existing").mkdir()  # a directory that existed before is never removed
    with run_lock(tmp_path / "existing"):
        pass
    assert (tmp_path / "existing").is_dir()


def test_temporaries_are_per_process_and_leftovers_of_dead_writers_go(tmp_path):
    seen = []
    write_atomically(tmp_path / "metrics.jsonl", lambda p: (seen.append(p.name), p.write_text("x\n")))
    assert seen == [f".metrics.jsonl.{os.getpid()}.tmp"] and (tmp_path / "metrics.jsonl").read_text() == "x\n"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftovers = [
        ".tmpAb12Cd",
        f".metrics.jsonl.{int(dead.stdout)}.tmp",
        f".policy-000001.safetensors.{dead.stdout.strip()}.tmp",
    ]
    alive = f".checkpoint.json.{os.getppid()}.tmp"  # a writer that still runs keeps its file
    users = [".tmp-notours", "keep.tmp", f".backup.{int(dead.stdout)}.tmp"]  # not names a run writes
    for name in [*leftovers, alive, *users]:
        (tmp_path / name).write_text("partial")
    # safetensors' .tmpXXXXXX is a leftover only where a run lives (checkpoint.json): --out may be any folder
    assert sorted(p.name for p in remove_leftovers(tmp_path)) == sorted(leftovers[1:])
    (tmp_path / "checkpoint.json").write_text("{}")
    (tmp_path / ".tmpAb12Cd").write_text("partial")
    assert [p.name for p in remove_leftovers(tmp_path)] == [".tmpAb12Cd"]
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.jsonl", "checkpoint.json", alive, *users}


def test_saved_policies_carry_checksums_and_public_weights(tmp_path, tiny_policy, tokenizer):
    old = os.umask(0o022)
    try:
        save_policy(tiny_policy, tokenizer, tmp_path / "p")
    finally:
        os.umask(old)
    weights = tmp_path / "p" / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == 0o644
    sums = json.loads((tmp_path / "p" / "checksums.json").read_text())
    assert sums == {"model.safetensors": sha256_of(weights)} and check_checksums(tmp_path / "p")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors is damaged: its SHA-256 is .*/checksums.json"):
        load_policy(tmp_path / "p")
    (tmp_path / "p" / "checksums.json").write_text(json.dumps({"model.safetensors": None}))
    with pytest.raises(ValueError, match="checksums.json is damaged: it should map file names to SHA-256"):
        load_policy(tmp_path / "p")
    (tmp_path / "p" / "checksums.json").write_text(json.dumps(sums))
    weights.write_bytes(bytes(data[:1000]))  # truncated
    with pytest.raises(ValueError, match="model.safetensors is damaged"):
        load_warmup_policy("cpu", tmp_path / "p")


def test_non_finite_weights_are_refused_on_load(tmp_path, tiny_policy, tokenizer):
    with torch.no_grad():
        next(tiny_policy.parameters()).fill_(float("nan"))
    save_policy(tiny_policy, tokenizer, tmp_path)
    with pytest.raises(ValueError, match="hold NaN or infinite values"):
        load_warmup_policy("cpu", tmp_path)


def test_shipped_checkpoints_are_verified_and_read_only():
    for path in SHIPPED_DIR.iterdir():
        assert check_checksums(path), path  # metrics.json records the weights' SHA-256
    with pytest.raises(ValueError, match="never overwrite"):
        check_writable(SHIPPED_DIR / "warmup-cpu-tiny")
    with pytest.raises(ValueError, match="never overwrite"):
        check_writable(SHIPPED_DIR / "mine" / "sub")
    with pytest.raises(ValueError, match="replaces the shipped warm-up of preset 'cpu-small'"):
        check_writable(SHIPPED_DIR / "warmup-cpu-tiny", replace_shipped=True, preset="cpu-small")
    with pytest.raises(ValueError, match="preset 'gpu' has no shipped warm-up"):
        check_writable(SHIPPED_DIR / "warmup-gpu", replace_shipped=True, preset="gpu")
    assert check_writable(SHIPPED_DIR / "warmup-cpu-tiny", replace_shipped=True, preset="cpu-tiny")


def test_public_file_follows_the_umask(tmp_path):
    path = tmp_path / "w"
    path.write_bytes(b"x")
    path.chmod(0o600)
    old = os.umask(0o027)
    try:
        assert public_file(path).stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
