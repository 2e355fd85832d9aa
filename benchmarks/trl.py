"""kimi_mini's RL iteration against TRL's GRPOTrainer on the same policy, task, batch and lengths (CPU).

    python benchmarks/trl.py [--iterations 3] [--save]        # needs the trl extra: pip install -e ".[trl]"

Both start from the shipped warm-up policy and run the same k1.5 iteration: 16 Countdown-mini problems x 8
samples, up to 480 new tokens at temperature 1, the OMD loss (tau = 1) with 4 AdamW steps on each batch
(kimi_mini: ``RLConfig(grad_steps=4)``; TRL: :class:`kimi_mini.trl.OMDTrainer` with ``num_iterations=4``,
so one iteration is 4 trainer steps), learning rate 1e-4, one torch thread. Timed: kimi_mini's
``rollout_seconds + train_seconds``; TRL's trainer steps (generation, old log-probs, losses, optimizer),
held-out evaluation and setup excluded in both. The policies drift apart after the first iteration (other
random numbers), so the comparison is per generated token as well as per iteration. ``--save`` writes
``kimi_mini/results/trl-cpu.json``, which chapter 9 reads.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # this file is trl.py: keep `import trl` for TRL
sys.path.insert(0, str(HERE.parent))  # run from a clone without installing
from kimi_mini.config import RLConfig  # noqa: E402
from kimi_mini.device import set_threads, versions  # noqa: E402
from kimi_mini.train import train_rl  # noqa: E402
from kimi_mini.warmup import load_warmup_policy  # noqa: E402

RESULT = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "trl-cpu.json"
PROMPTS, GROUP, MAX_NEW, GRAD_STEPS, LR = 16, 8, 480, 4, 1e-4


def run_kimi_mini(iterations: int) -> dict:
    policy, tokenizer = load_warmup_policy()
    cfg = RLConfig(
        iterations=iterations,
        prompts_per_iteration=PROMPTS,
        group_size=GROUP,
        max_new_tokens=MAX_NEW,
        grad_steps=GRAD_STEPS,
        lr=LR,
        eval_every=10_000,
        eval_problems=1,
        checkpoint_every=10_000,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        history = train_rl(policy, tokenizer, cfg, run_dir, progress=False)
    seconds = [row["rollout_seconds"] + row["train_seconds"] for row in history]
    tokens = [row["response_tokens"] * PROMPTS * GROUP for row in history]
    return dict(
        config=asdict(cfg),
        seconds=seconds,
        rollout_seconds=[row["rollout_seconds"] for row in history],
        train_seconds=[row["train_seconds"] for row in history],
        tokens=tokens,
        reward=[row["reward"] for row in history],
    )


def run_trl(iterations: int) -> dict:
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from kimi_mini.trl import OMDTrainer, countdown_dataset, countdown_reward

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    sampled = []  # (tokens, mean reward) of every batch TRL generated, seen by the reward function

    def counted_reward(completions, completion_ids, **kwargs):
        rewards = countdown_reward(completions, completion_ids=completion_ids, **kwargs)
        sampled.append((sum(len(ids) for ids in completion_ids), sum(rewards) / len(rewards)))
        return rewards

    counted_reward.__name__ = "countdown_reward"
    policy, tokenizer = load_warmup_policy()
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=PROMPTS * GROUP,
            num_generations=GROUP,
            max_completion_length=MAX_NEW,
            num_iterations=GRAD_STEPS,
            max_steps=iterations * GRAD_STEPS,
            learning_rate=LR,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            temperature=1.0,
            beta=0.0,
            scale_rewards="none",
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            seed=0,
        )
        trainer = OMDTrainer(
            model=policy,
            reward_funcs=[counted_reward],
            args=args,
            train_dataset=countdown_dataset(PROMPTS * (iterations + 1), seed=1),
            processing_class=tokenizer,
            callbacks=[timer],
            tau=1.0,
        )
        trainer.train()
    if len(sampled) != iterations:
        raise RuntimeError(f"TRL generated {len(sampled)} batches in {iterations} iterations")
    per_iteration = [sum(timer.seconds[i * GRAD_STEPS : (i + 1) * GRAD_STEPS]) for i in range(iterations)]
    return dict(
        config={k: v for k, v in args.to_dict().items() if k in _TRL_KEYS},
        step_seconds=timer.seconds,
        seconds=per_iteration,
        tokens=[float(tokens) for tokens, _ in sampled],
        reward=[reward for _, reward in sampled],
    )


_TRL_KEYS = (
    "per_device_train_batch_size",
    "num_generations",
    "max_completion_length",
    "num_iterations",
    "learning_rate",
    "temperature",
    "beta",
    "scale_rewards",
)


def summary(kimi: dict, trl: dict) -> dict:
    k_s, t_s = sum(kimi["seconds"]), sum(trl["seconds"])
    k_tps, t_tps = sum(kimi["tokens"]) / k_s, sum(trl["tokens"]) / t_s
    return dict(
        kimi_mini_seconds_per_iteration=k_s / len(kimi["seconds"]),
        trl_seconds_per_iteration=t_s / len(trl["seconds"]),
        time_ratio=t_s / k_s,
        kimi_mini_tokens_per_second=k_tps,
        trl_tokens_per_second=t_tps,
        throughput_ratio=k_tps / t_tps,
    )


def _trl_version() -> str:
    import trl

    return trl.__version__


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    set_threads(1)
    kimi = run_kimi_mini(args.iterations)
    trl = run_trl(args.iterations)
    record = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{platform.machine()}, 1 thread",
        versions={**versions(), "trl": _trl_version()},
        kimi_mini=kimi,
        trl=trl,
        summary=summary(kimi, trl),
    )
    print(json.dumps(record["summary"], indent=1))
    if args.save:
        RESULT.write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
