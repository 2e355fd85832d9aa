"""The GPU check: the gpu preset's warm-up, the sampler against model.generate, RL with partial rollouts
and OMDTrainer on a Qwen2-format model, on one device, written to one JSON.

    python benchmarks/gpu.py [--out runs/gpu-check.json] [--save]   # one GPU: under 10 minutes
    python benchmarks/gpu.py --device cpu --tiny --out /tmp/gpu-check-cpu-tiny.json   # the same code, tiny

Four parts, each a section of the JSON:

1. ``warmup``: the gpu preset's policy (25M parameters) and task (numbers up to 9), ``train_sft`` for 300
   of the preset's 6,000 steps (batch 128): loss, tokens/s.
2. ``sampler``: that policy answering 64 problems x 8 samples, up to 512 new tokens, with
   ``kimi_mini.rollout.sample`` and with ``model.generate`` (``benchmarks/rollout.py``'s timing):
   response tokens/s of each and their ratio.
3. ``rl``: 4 iterations of ``train_rl`` with the gpu preset's RL settings (64 problems x 16 samples,
   1,536-token budget) and partial rollouts (512-token segments), 4 groups per backward pass; per
   iteration: rollout and training seconds, reward, length, tokens/s, and held-out accuracy at the end.
4. ``trl``: ``OMDTrainer`` with the k1.5 rewards for 4 steps on a stand-in Qwen2 chat model
   (``kimi_mini.pretrained.save_stand_in_model``, random weights, chat prompts), TRL's own generation:
   seconds per step.

``--tiny`` shrinks every part (a 2-layer policy, 20 warm-up steps, a handful of samples) so that the same
code runs on the CPU in well under a minute; ``tests/test_gpu_check.py`` runs it that way. The header
holds the date, the device (the GPU's name), torch, CUDA, transformers, TRL and kimi_mini versions.
``--save`` stores the result as ``kimi_mini/results/gpu-check.json`` (``gpu-check-cpu-tiny.json`` for the
tiny CPU form).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # keep `import trl` for TRL (benchmarks/trl.py)
sys.path.insert(0, str(HERE.parents[0]))  # run from a clone without installing
from kimi_mini.config import get_preset, get_rl_preset  # noqa: E402
from kimi_mini.device import get_device, set_threads, versions  # noqa: E402
from kimi_mini.policy import build_policy, count_parameters, load_policy  # noqa: E402
from kimi_mini.rollout import sample  # noqa: E402
from kimi_mini.sft import train_sft  # noqa: E402
from kimi_mini.tasks import make_problems, prompt_text  # noqa: E402
from kimi_mini.tokenizer import build_char_tokenizer  # noqa: E402
from kimi_mini.train import train_rl  # noqa: E402

RESULTS = HERE.parent / "kimi_mini" / "results"
FULL = dict(
    model={},
    warmup=dict(steps=300),
    sampler=dict(prompts=64, group_size=8, max_new_tokens=512),
    rl=dict(iterations=4, micro_batch_groups=4, eval_problems=32),
    trl=dict(steps=4, prompts=8, num_generations=4, max_completion_length=256),
)
TINY = dict(
    model=dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
    warmup=dict(steps=20, batch_size=8, warmup_steps=5, log_every=10),
    sampler=dict(prompts=4, group_size=2, max_new_tokens=32),
    # a budget of 2 segments: groups finish, and train, from the second iteration on
    rl=dict(
        iterations=3,
        prompts_per_iteration=2,
        group_size=4,
        max_new_tokens=32,
        segment_tokens=16,
        micro_batch_groups=1,
        eval_problems=8,
    ),
    trl=dict(steps=2, prompts=2, num_generations=2, max_completion_length=16),
)


def _benchmark(name: str):
    """Another script of benchmarks/ as a module (this folder is off sys.path: its trl.py would hide TRL)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_warmup(cfg, device: torch.device):
    """The preset's policy, built and warmed up on ``device``: (model, tokenizer, metrics)."""
    tokenizer = build_char_tokenizer()
    torch.manual_seed(cfg.sft.seed)
    model = build_policy(cfg.model, tokenizer)
    result = train_sft(model, tokenizer, cfg.sft, cfg.task, device=device, progress=False)
    metrics = dict(
        parameters=count_parameters(model),
        steps=cfg.sft.steps,
        batch_size=cfg.sft.batch_size,
        seconds=result["seconds"],
        tokens_per_second=result["tokens_per_second"],
        first_loss=result["history"][0]["loss"],
        final_loss=result["final_loss"],
    )
    return model, tokenizer, metrics


def run_sampler(model, tokenizer, task, settings: dict, device: torch.device) -> dict:
    """kimi_mini's sampler against ``model.generate`` on the same prompts: response tokens per second."""
    time_generate = _benchmark("rollout").time_generate

    prompts = [prompt_text(p) for p in make_problems(settings["prompts"], seed=777, cfg=task)]
    k, max_new = settings["group_size"], settings["max_new_tokens"]
    sample(model, tokenizer, prompts[:2], group_size=2, max_new_tokens=8)  # warm up kernels
    generate = time_generate(model, tokenizer, prompts, k, max_new, seed=0)
    _sync(device)
    start = time.perf_counter()
    stats = sample(model, tokenizer, prompts, group_size=k, max_new_tokens=max_new, seed=0).stats
    _sync(device)
    ours = dict(seconds=time.perf_counter() - start, tokens=stats["tokens"], steps=stats["steps"])
    for part in (generate, ours):
        part["tokens_per_second"] = part["tokens"] / part["seconds"]
    return dict(
        settings=settings,
        generate=generate,
        sampler=ours,
        sampler_over_generate=ours["tokens_per_second"] / generate["tokens_per_second"],
    )


def run_rl(model, tokenizer, task, overrides: dict) -> dict:
    """``train_rl`` with the gpu preset's RL settings and partial rollouts, for a few iterations."""
    cfg = get_rl_preset("gpu", partial_rollouts=True, eval_every=1_000_000, checkpoint_every=1_000_000, **overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        history = train_rl(model, tokenizer, cfg, run_dir, task_cfg=task, progress=False)
    return dict(
        config=asdict(cfg),
        iterations=history,
        trained_iterations=sum("loss" in row for row in history),
        seconds=sum(row["rollout_seconds"] + row["train_seconds"] for row in history),
    )


def run_trl(settings: dict, device: torch.device) -> dict:
    """``OMDTrainer`` steps with the k1.5 rewards on a stand-in Qwen2 chat model, TRL generating."""
    from transformers import PrinterCallback, TrainerCallback

    from kimi_mini.pretrained import save_stand_in_model
    from kimi_mini.scaleout import grpo_config
    from kimi_mini.trl import OMDTrainer, countdown_dataset, countdown_reward, make_length_reward

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds = []

        def on_step_begin(self, args, state, control, **kwargs):
            _sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            self.seconds.append(time.perf_counter() - self.start)

    g, timer = settings["num_generations"], StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        policy, tokenizer = load_policy(save_stand_in_model(Path(tmp) / "stand-in"), device)
        args = grpo_config(
            Path(tmp) / "out", 1, settings["prompts"], g, settings["steps"], cpu=device.type == "cpu",
            max_completion_length=settings["max_completion_length"],
        )  # fmt: skip
        trainer = OMDTrainer(
            model=policy,
            reward_funcs=[countdown_reward, make_length_reward(g)],
            args=args,
            train_dataset=countdown_dataset(settings["prompts"] * (settings["steps"] + 1), seed=1, style="chat"),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    logged = [row for row in trainer.state.log_history if "completions/mean_length" in row]
    return dict(
        settings=settings,
        model=type(policy).__name__,
        parameters=count_parameters(policy),
        device=str(trainer.accelerator.device),
        bf16=args.bf16,
        step_seconds=timer.seconds,
        mean_completion_tokens=[row["completions/mean_length"] for row in logged],
    )


def header(device: torch.device, tiny: bool) -> dict:
    """Date, machine and versions, as the other benchmarks' results start, plus the GPU and CUDA."""
    import trl

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    return dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{name}, {torch.get_num_threads()} torch thread(s)",
        versions={**versions(), "device": str(device), "trl": trl.__version__, "cuda": torch.version.cuda},
        tiny=tiny,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: the best available)")
    parser.add_argument("--tiny", action="store_true", help="every part tiny: the same code in under a minute on a CPU")
    parser.add_argument("--out", default="runs/gpu-check.json")
    parser.add_argument("--save", action="store_true", help="also store the result in kimi_mini/results/")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    if device.type == "cpu":
        set_threads()
    sizes = TINY if args.tiny else FULL
    start = time.perf_counter()
    cfg = get_preset("gpu", model=sizes["model"], sft=sizes["warmup"])
    record = header(device, args.tiny)
    model, tokenizer, record["warmup"] = run_warmup(cfg, device)
    record["sampler"] = run_sampler(model, tokenizer, cfg.task, sizes["sampler"], device)
    record["rl"] = run_rl(model, tokenizer, cfg.task, sizes["rl"])
    record["trl"] = run_trl(sizes["trl"], device)
    record["seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    if args.save:
        name = "gpu-check" + ("" if device.type == "cuda" else f"-{device.type}") + ("-tiny" if args.tiny else "")
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"{record['machine']}: {record['seconds']:.0f} s; sampler/generate {record['sampler']['sampler_over_generate']:.2f}x; "
        f"RL {record['rl']['seconds']:.1f} s for {len(record['rl']['iterations'])} iterations; written to {out}"
    )
    return record


if __name__ == "__main__":
    main()
