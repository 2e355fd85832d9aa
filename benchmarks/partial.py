"""Partial rollouts against plain rollouts on the warm-up policy: sampling time per finished trajectory.

    python benchmarks/partial.py [--iterations 12] [--warmup-iterations 4] [--segments 32 64 128] [--save]

The policy stays fixed (no training), so the comparison isolates sampling. Both are run twice: with a
lock-step batch (finished rows keep their slot until the longest row ends, as in ``model.generate`` and,
in cost, on a GPU) and with kimi_mini's sampler, which drops finished rows. Plain rollouts: each iteration
samples 16 prompts x 8 responses of up to 480 tokens and waits for the longest; every iteration finishes
all 128 trajectories. Partial rollouts: 128 rows per iteration, each trajectory at most ``segment`` new
tokens per iteration, unfinished ones continued next iteration (prompt and prefix re-encoded), new groups
filling the free rows. After ``--warmup-iterations`` (the buffer fills up), the next iterations are timed.
Reported per setting: decoding steps and seconds per iteration, token slots computed per finished trajectory, finished trajectories per iteration, seconds per 128 finished
trajectories (the plain iteration's output), tokens sampled and prefix tokens re-encoded per finished
trajectory, and the share of a finished trajectory's tokens sampled by an earlier iteration. ``--save``
writes ``kimi_mini/results/partial-cpu.json``, which chapter 6 reads.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing
from kimi_mini.config import RLConfig, TaskConfig
from kimi_mini.device import set_threads, versions
from kimi_mini.partial import ReplayBuffer, partial_rollout_step
from kimi_mini.rollout import sample
from kimi_mini.tasks import make_problems, prompt_text
from kimi_mini.warmup import load_warmup_policy

# How the sampler treats finished rows: "lock-step" keeps every row until the longest ends (model.generate,
# and roughly a GPU, where a decoding step costs about the same for 1 row or 128); "drop finished" is
# kimi_mini's default, which removes finished rows from the batch (chapter 2).
BATCHING = {"lock-step": 1.0, "drop finished": 0.125}
RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "partial-cpu.json"


def plain(policy, tokenizer, cfg: RLConfig, iterations: int, compact_every: float) -> dict:
    seconds, tokens, steps, row_steps, lengths = [], 0, 0, 0, []
    for it in range(iterations):
        problems = make_problems(cfg.prompts_per_iteration, seed=1000 + it)
        r = sample(
            policy,
            tokenizer,
            [prompt_text(p) for p in problems],
            cfg.group_size,
            cfg.max_new_tokens,
            seed=1000 + it,
            compact_every=compact_every,
        )
        seconds.append(r.stats["seconds"])
        tokens += r.stats["tokens"]
        steps += r.stats["steps"]
        row_steps += r.stats["row_steps"]
        lengths += r.lengths.tolist()
    finished = iterations * cfg.prompts_per_iteration * cfg.group_size
    return dict(
        segment=None,
        steps_per_iteration=steps / iterations,
        row_steps_per_finished=row_steps / finished,
        seconds_per_iteration=sum(seconds) / iterations,
        finished_per_iteration=finished / iterations,
        seconds_per_128_finished=sum(seconds) / finished * 128,
        sampled_tokens_per_finished=tokens / finished,
        reencoded_tokens_per_finished=0.0,
        reused_share=0.0,
        lengths=lengths,
    )


def partial(policy, tokenizer, cfg: RLConfig, iterations: int, warmup: int, compact_every: float) -> dict:
    buffer, seconds, finished, sampled, reencoded, reused, total = ReplayBuffer(), 0.0, 0, 0, 0, 0, 0
    steps = row_steps = 0
    for it in range(warmup + iterations):
        prefix_tokens = sum(len(t) for _, t in buffer.unfinished())
        step = partial_rollout_step(
            policy, tokenizer, buffer, cfg, it, seed=1000 + it, task_cfg=TaskConfig(), compact_every=compact_every
        )
        if it < warmup:
            continue
        steps += step.steps
        row_steps += step.row_steps
        seconds += step.seconds
        sampled += step.generated_tokens
        reencoded += prefix_tokens
        for group in step.finished:
            for t in group.trajectories:
                finished += 1
                total += len(t)
                reused += sum(len(s.ids) for s in t.segments if s.iteration < it)
    return dict(
        segment=cfg.segment_tokens,
        steps_per_iteration=steps / iterations,
        row_steps_per_finished=row_steps / finished,
        seconds_per_iteration=seconds / iterations,
        finished_per_iteration=finished / iterations,
        seconds_per_128_finished=seconds / finished * 128,
        sampled_tokens_per_finished=sampled / finished,
        reencoded_tokens_per_finished=reencoded / finished,
        reused_share=reused / total,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--warmup-iterations", type=int, default=4)
    parser.add_argument("--segments", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    policy, tokenizer = load_warmup_policy()
    base = RLConfig(repeat_times=0)  # 16 x 8 rows, 480 tokens; repeats are chapter 6's other topic
    start = time.perf_counter()
    rows = []
    for batching, compact_every in BATCHING.items():
        rows.append(dict(batching=batching, **plain(policy, tokenizer, base, args.iterations, compact_every)))
        for segment in args.segments:
            cfg = RLConfig(partial_rollouts=True, segment_tokens=segment, repeat_times=0)
            run = partial(policy, tokenizer, cfg, args.iterations, args.warmup_iterations, compact_every)
            rows.append(dict(batching=batching, **run))
    result = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{platform.machine()}, {platform.processor() or 'cpu'}, {args.threads} torch thread(s)",
        versions=versions(),
        settings=dict(
            prompts_per_iteration=base.prompts_per_iteration,
            group_size=base.group_size,
            max_new_tokens=base.max_new_tokens,
            iterations=args.iterations,
            warmup_iterations=args.warmup_iterations,
        ),
        rows=rows,
        seconds=time.perf_counter() - start,
    )
    if args.save:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        print(
            f"{row['batching']:>13} segment {row['segment']!s:>4}: {row['steps_per_iteration']:5.0f} steps/it, "
            f"{row['seconds_per_128_finished']:5.2f} s per 128 finished, {row['row_steps_per_finished']:5.0f} slots/finished, "
            f"{row['finished_per_iteration']:5.1f} finished/it, reused {row['reused_share']:.2f}"
        )
    return result


if __name__ == "__main__":
    main()
