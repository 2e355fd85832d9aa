"""Run directories and saved policies: one writer at a time, atomic writes, checksums checked on load.

A run directory (``kimi-mini train --out``) is written by one process at a time: :func:`run_lock` holds
an exclusive lock on ``.kimi-mini.lock`` in it for as long as the run writes, and a second writer gets a
one-line error naming the holder (pid and host). The lock is an OS file lock (``flock``), so the kernel
drops it when its process dies: a lock file left behind by a killed run is taken over by the next one.

Files are written to a temporary name unique to the writing process and renamed into place
(:func:`write_atomically`); temporaries a killed writer left behind (``safetensors`` also writes its
weights through a hidden ``.tmpXXXXXX`` file) are removed by the next writer (:func:`remove_leftovers`).
Every weight file gets its SHA-256 in the metadata beside it (``checksums.json`` in a policy directory,
``checkpoint.json`` in a run), checked before the weights are read (:func:`check_checksums`).

Introduced in {ref}`ch4-loop`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "LOCK_NAME",
    "CHECKSUMS_NAME",
    "run_lock",
    "write_atomically",
    "remove_leftovers",
    "sha256_of",
    "public_file",
    "record_checksums",
    "check_checksums",
    "check_file",
    "read_json",
]

#: The checkpoints that ship with the package (read-only to every command).
SHIPPED_DIR = Path(__file__).parent / "checkpoints"
#: The shipped warm-up policy of each preset that has one.
SHIPPED_WARMUPS = {
    name: SHIPPED_DIR / f"warmup-{name}"
    for name in (
        "cpu-tiny",
        "cpu-small",
        "cpu-tiny-search-only",
        "cpu-tiny-first-candidate",
        "cpu-tiny-short-cot",
        "cpu-tiny-vision",
    )
}


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is, or lies inside, the shipped checkpoints."""
    path, shipped = Path(path).expanduser().resolve(), SHIPPED_DIR.resolve()
    return path == shipped or shipped in path.parents


LOCK_NAME = ".kimi-mini.lock"
#: Beside the weights of a saved policy: ``{"model.safetensors": "<hex SHA-256>", ...}``.
CHECKSUMS_NAME = "checksums.json"
# A kill can leave ``.NAME.PID.tmp`` for the files a run writes (ours) or ``.tmpXXXXXX`` (safetensors' own
# atomic write, only in a directory holding a run). Nothing else is touched: ``--out`` may be any folder.
_OUR_TEMPORARY = re.compile(r"\.(metrics\.jsonl|checkpoint\.json|checksums\.json|policy-\d+\.safetensors)\.\d+\.tmp")
_SAFETENSORS_TEMPORARY = re.compile(r"\.tmp[A-Za-z0-9]{6}")
_held: dict[Path, int] = {}  # run directories this process holds, with their nesting depth

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file alone marks the run as busy (delete it after a crash)
    fcntl = None


def _holder(lock: Path) -> str:
    """Who holds ``lock``, from what it wrote into it."""
    try:
        info = json.loads(lock.read_text())
        return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir`` for this process while the block runs (re-entrant); creates the directory.

    Raises ValueError naming the holder if another live process holds it.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _held:  # already ours: a nested call (the CLI around train_rl)
        _held[key] += 1
        try:
            yield run_dir
        finally:
            _held[key] -= 1
        return
    lock = run_dir / LOCK_NAME
    fd = _acquire(lock, run_dir)
    _held[key] = 1
    try:
        yield run_dir
    finally:
        del _held[key]
        if fcntl is None:  # Windows: an open file cannot be deleted
            os.close(fd)
        with contextlib.suppress(OSError):
            lock.unlink()  # with flock: before the descriptor closes, so no one locks a file about to vanish
        if fcntl is not None:
            os.close(fd)  # closing the descriptor releases the flock
        if created:  # a run refused before it wrote anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def _acquire(lock: Path, run_dir: Path) -> int:
    """Open and lock ``lock``, write who holds it; the descriptor stays open while the lock is held."""
    for _ in range(10):  # retried only when the file was replaced between open and lock
        flags = os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL)
        try:
            fd = os.open(lock, flags, 0o644)
        except FileExistsError:
            raise ValueError(_busy(lock, run_dir)) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise ValueError(_busy(lock, run_dir)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not unlinked by a holder finishing
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
        info = dict(pid=os.getpid(), host=socket.gethostname(), since=time.strftime("%Y-%m-%d %H:%M:%S"))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        return fd
    raise ValueError(_busy(lock, run_dir))


def _busy(lock: Path, run_dir: Path) -> str:
    return (
        f"{run_dir} is in use by {_holder(lock)}: wait for that run to end or choose another directory "
        f"(if no such process is running, delete {lock})"
    )


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; True where that cannot be told safely (on Windows,
    ``os.kill(pid, 0)`` would interrupt the process instead of probing it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_leftovers(directory: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``directory``; call it holding the run's lock.

    Our own temporaries name their process (``.NAME.PID.tmp``) and are kept while it runs; safetensors'
    ``.tmpXXXXXX`` files can only be a dead writer's when the lock is ours. Returns what was deleted."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    holds_a_run = (directory / "checkpoint.json").is_file() or (directory / CHECKSUMS_NAME).is_file()
    for path in directory.iterdir():
        ours = _OUR_TEMPORARY.fullmatch(path.name)
        if not path.is_file() or not (ours or (holds_a_run and _SAFETENSORS_TEMPORARY.fullmatch(path.name))):
            continue
        pid = path.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_file(path: str | Path) -> Path:
    """Give ``path`` the permissions of a newly created file (0644 under the usual umask): safetensors
    writes its weights through a private (0600) temporary file."""
    path = Path(path)
    path.chmod(0o666 & ~_umask())
    return path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary name unique to this process, then rename it to ``path``: readers see
    the old file or the new one, never half of one, and two processes never share a temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        public_file(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path) -> dict:
    """The JSON object in ``path``; a damaged file is a ValueError that names it."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged (not valid JSON: {err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged (a JSON {type(value).__name__}, not an object)")
    return value


def record_checksums(directory: str | Path) -> dict[str, str]:
    """Write ``checksums.json``: the SHA-256 of every ``*.safetensors`` file in ``directory``."""
    directory = Path(directory)
    sums = {p.name: sha256_of(p) for p in sorted(directory.glob("*.safetensors"))}
    write_atomically(directory / CHECKSUMS_NAME, lambda p: p.write_text(json.dumps(sums, indent=1) + "\n"))
    return sums


def check_file(path: str | Path, expected: str, recorded_in: str | Path) -> None:
    """Raise ValueError naming ``path`` if its SHA-256 is not ``expected`` (recorded in ``recorded_in``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing (its checksum is recorded in {recorded_in})")
    found = sha256_of(path)
    if found != expected:
        raise ValueError(
            f"{path} is damaged: its SHA-256 is {found[:12]}..., not the {expected[:12]}... recorded in "
            f"{recorded_in} (a truncated copy or an interrupted download?)"
        )


def check_checksums(directory: str | Path) -> bool:
    """Check the weights of a saved policy against its recorded SHA-256s; False if none are recorded.

    The record is ``checksums.json``, or for warm-up directories written before it existed, the
    ``sha256`` of ``model.safetensors`` in ``metrics.json``."""
    directory = Path(directory)
    record = directory / CHECKSUMS_NAME
    if record.is_file():
        recorded = read_json(record)
        if not all(isinstance(v, str) for v in recorded.values()):  # read_json: an object
            raise ValueError(f"{record} is damaged: it should map file names to SHA-256 strings")
        for name, expected in recorded.items():
            check_file(directory / name, expected, record)
        return True
    metrics = directory / "metrics.json"
    if metrics.is_file():
        expected = read_json(metrics).get("sha256")
        if isinstance(expected, str):
            check_file(directory / "model.safetensors", expected, metrics)
            return True
    return False
