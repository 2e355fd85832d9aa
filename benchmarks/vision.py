"""Joint text and image RL (chapter 11): does RL on one modality help the other?

    python benchmarks/vision.py run [--jobs 2] [--save]

Every run starts from the shipped joint warm-up (``kimi_mini/checkpoints/warmup-cpu-tiny-vision``, made by
``make warmup-vision``) and trains with the ``cpu-tiny-vision`` preset's RL settings, changing only
``RLConfig.modality``: RL on text problems only, on image problems only (rendered and dots in turn), or on
all three kinds in turn. Every arm runs the same iterations with the same problems per iteration, so the
arms draw the same number of problems and responses and differ in what their problems look like. Each arm runs with 3 seeds; each
trained policy, and the warm-up itself (with 3 sampling seeds), is then sampled once on the same 512
held-out problems in each of the three kinds, at the preset's token limit: correctness, length and, on
images, whether a miss read the problem wrong (:func:`kimi_mini.vision.error_kind`). Finished pieces are
cached in ``--cache``; ``--save`` writes ``kimi_mini/results/vision-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_losses import cached, result_header  # noqa: E402

from kimi_mini.config import get_rl_preset  # noqa: E402
from kimi_mini.device import set_threads  # noqa: E402
from kimi_mini.policy import load_local_policy  # noqa: E402
from kimi_mini.rundir import SHIPPED_WARMUPS, write_atomically  # noqa: E402
from kimi_mini.tasks import heldout_problems  # noqa: E402
from kimi_mini.train import heldout_outcomes, train_rl  # noqa: E402
from kimi_mini.vision import KINDS, read_outcomes  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "vision-cpu.json"
CACHE = Path(__file__).resolve().parent / ".cache" / "vision"
PRESET = "cpu-tiny-vision"
WARMUP = SHIPPED_WARMUPS[PRESET]
SEEDS = (0, 1, 2)
ARMS = ("text", "image", "joint")  # RLConfig.modality of each RL arm
EVAL_PROBLEMS = 512


def rl_config(arm: str, seed: int):
    """The preset's RL settings with the arm's modality and the seed (a short in-run evaluation only)."""
    return get_rl_preset(PRESET, modality=arm, seed=seed, eval_every=1000, eval_problems=64)


def evaluate(policy, tokenizer, cfg) -> dict:
    """Per kind: one sample on each of the 512 held-out problems (the same for every run), as lists; for the
    image kinds also ``read``, whether the greedy read line is right (what the policy sees, without sampling)."""
    out = {kind: heldout_outcomes(policy, tokenizer, cfg, EVAL_PROBLEMS, modality=kind) for kind in KINDS}
    problems = heldout_problems(EVAL_PROBLEMS, 0)
    for kind in KINDS[1:]:
        out[kind]["read"] = read_outcomes(policy, tokenizer, problems, kind)
    return out


def warmup_eval(seed: int) -> dict:
    """The warm-up itself, sampled with seed ``seed``."""
    set_threads(1)
    policy, tokenizer = load_local_policy(WARMUP, regenerate="make warmup-vision")
    start = time.perf_counter()
    out = dict(
        name=f"warm-up:{seed}", arm="warm-up", seed=seed, eval=evaluate(policy, tokenizer, rl_config("joint", seed))
    )
    out["eval_seconds"] = time.perf_counter() - start
    return out


def rl_run(arm: str, seed: int) -> dict:
    """One RL arm with one seed from the joint warm-up, then its evaluation."""
    set_threads(1)
    policy, tokenizer = load_local_policy(WARMUP, regenerate="make warmup-vision")
    cfg = rl_config(arm, seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        history = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
    seconds, start = time.perf_counter() - start, time.perf_counter()
    policy.eval()
    out = dict(name=f"{arm}:{seed}", arm=arm, seed=seed, history=history, train_seconds=seconds)
    out["eval"] = evaluate(policy, tokenizer, cfg)
    out["eval_seconds"] = time.perf_counter() - start
    return out


def job(kind: str, arm: str, seed: int, cache: str) -> dict:
    """A cached piece: the warm-up's evaluation, or an RL run."""
    path = Path(cache) / f"{arm}-{seed}.json"
    return cached(path, lambda: warmup_eval(seed) if kind == "warmup" else rl_run(arm, seed))


def run(n_jobs: int, cache: Path) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [("warmup", "warm-up", s) for s in SEEDS] + [("rl", arm, s) for arm in ARMS for s in SEEDS]
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        runs = list(pool.map(job, *zip(*jobs), [str(cache)] * len(jobs)))
    warmup_metrics = json.loads((WARMUP / "metrics.json").read_text())
    return dict(
        **result_header(f"{n_jobs} runs in parallel"),
        settings=dict(
            preset=PRESET,
            seeds=list(SEEDS),
            arms=list(ARMS),
            kinds=list(KINDS),
            eval_problems=EVAL_PROBLEMS,
            rl={k: v for k, v in asdict(rl_config("joint", 0)).items() if k not in ("modality", "seed")},
        ),
        warmup=dict(sha256=warmup_metrics["sha256"], train=warmup_metrics["train"], eval=warmup_metrics["eval"]),
        runs=runs,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--save", action="store_true", help=f"write {RESULT.name} into kimi_mini/results")
    args = parser.parse_args(argv)
    result = run(args.jobs, args.cache)
    if args.save:
        text = json.dumps(result) + "\n"
        write_atomically(RESULT, lambda tmp: tmp.write_text(text))
    return result


if __name__ == "__main__":
    main()
