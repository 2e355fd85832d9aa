"""OMDTrainer on many processes: one entry point for ``accelerate launch``, and the configs to launch it.

kimi_mini's own loop (:func:`kimi_mini.train.train_rl`) runs in one process on one device. For many
processes or GPUs, run the same recipe on Hugging Face TRL (:mod:`kimi_mini.trl`: the verifier, k1.5's
per-group length reward, ``OMDTrainer``). This module is that run as a command: ``python -m
kimi_mini.scaleout --out DIR`` in one process, ``accelerate launch --config_file FILE -m
kimi_mini.scaleout --out DIR`` in many. It writes the final weights (``DIR/policy``), ``DIR/result.json``
(settings, TRL's logs, time) and ``DIR/groups-rankR.json``: which problems process R scored at each step.
The package ships the configs (:data:`CONFIG_DIR`):

- ``accelerate-cpu-2proc.yaml``: two CPU processes, torch.distributed's gloo backend. ``tests/test_scaleout.py``
  launches it and a one-process run with the same global batch and checks that they end with the same
  weights (measured: within 3.6e-7 after 4 steps) and that each process scores whole groups.
- ``accelerate-zero2.yaml`` with ``deepspeed-zero2.json``: one node of 8 GPUs, DeepSpeed ZeRO stage 2.
  ``--vllm`` generates with vLLM through TRL's own settings (:func:`vllm_settings`). Parsed by the tests;
  not run here (no GPU, no DeepSpeed).

:func:`launch_command` writes the command with the configs' absolute paths; ``python -m kimi_mini.scaleout
--launch-command zero2`` prints it.

**Samples.** By default TRL generates (``model.generate``, or vLLM), each process from its own random
stream, so the samples, and the weights after them, depend on the number of processes. ``--sampler
by-group`` draws each group with kimi_mini's sampler (:func:`kimi_mini.rollout.sample`, through TRL's
``rollout_func``, experimental in TRL 1.x) from a seed made of the run's seed, the step and the group's
place in the global batch: the same samples on one process or many. That is how the test compares weights.

Introduced in {ref}`ch9-trl`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import time
from pathlib import Path

import torch

from .device import set_threads, versions
from .rollout import sample
from .tasks import SEED_STRIDE

__all__ = ["CONFIG_DIR", "CONFIGS", "grpo_config", "vllm_settings", "by_group_rollout", "launch_command", "main"]

#: The accelerate and DeepSpeed configs the package ships.
CONFIG_DIR = Path(__file__).parent / "configs"
#: ``launch_command``'s names: (accelerate config, DeepSpeed config or None).
CONFIGS = {
    "cpu-2proc": ("accelerate-cpu-2proc.yaml", None),
    "zero2": ("accelerate-zero2.yaml", "deepspeed-zero2.json"),
}


#: ``--launch-command zero2``'s run: chapter 9's Colab settings (32 x 8 samples there; 16 x 8 per step here,
#: 2 prompts per GPU on 8 GPUs), Qwen2.5-0.5B-Instruct answering in its chat template.
ZERO2_FLAGS = (
    "--policy Qwen/Qwen2.5-0.5B-Instruct --prompt-style chat --prompts 16 --num-generations 8 "
    "--max-completion-length 1024 --lr 1e-6 --steps 200 --out runs/trl-zero2"
)


def grpo_config(
    out: str | Path,
    processes: int = 1,
    prompts: int = 4,
    num_generations: int = 4,
    steps: int = 4,
    cpu: bool | None = None,
    **settings,
):
    """A ``GRPOConfig`` for ``OMDTrainer`` whose global batch, ``prompts`` x ``num_generations`` completions
    per step, is the same for any number of ``processes`` (each takes an equal share of whole groups).

    ``cpu`` (default: when there is no CUDA) runs on the CPU in float32; on CUDA, bf16 autocast with
    float32 weights where the GPU supports it. ``settings`` override any other ``GRPOConfig`` field.
    """
    from trl import GRPOConfig

    if prompts % processes:
        raise ValueError(
            f"prompts = {prompts} is invalid for {processes} processes: each process needs the same number of "
            "whole groups, so prompts must be a multiple of the number of processes"
        )
    cpu = not torch.cuda.is_available() if cpu is None else cpu
    defaults = dict(
        output_dir=str(out),
        per_device_train_batch_size=prompts // processes * num_generations,
        num_generations=num_generations,
        max_steps=steps,
        max_completion_length=64,
        num_iterations=2,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        temperature=1.0,
        beta=0.0,
        scale_rewards="none",
        use_cpu=cpu,
        bf16=not cpu and torch.cuda.is_bf16_supported(),
        ddp_find_unused_parameters=False,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    return GRPOConfig(**{**defaults, **settings})


def vllm_settings(mode: str = "colocate", gpu_memory_utilization: float = 0.3, available: bool | None = None) -> dict:
    """``GRPOConfig`` fields that make TRL generate with vLLM, or ``{}`` when vLLM is not importable
    (``available`` overrides the check). Names checked against TRL 1.16's ``GRPOConfig``.

    ``mode="colocate"``: every training process runs its own vLLM engine on its GPU, taking
    ``gpu_memory_utilization`` of its memory; ``"server"``: a separate ``trl vllm-serve --model NAME`` on
    other GPUs (``vllm_server_host``/``vllm_server_port``, default 0.0.0.0:8000). Both keep TRL's
    correction for the difference between vLLM's and the trainer's probabilities, per sequence, which
    ``OMDTrainer`` applies to each sequence's surrogate.
    """
    if mode not in ("colocate", "server"):
        raise ValueError(f"mode = {mode!r} is invalid: it must be 'colocate' or 'server'")
    if available is None:
        from trl.import_utils import is_vllm_available

        available = is_vllm_available()
    if not available:
        return {}
    settings = dict(
        use_vllm=True,
        vllm_mode=mode,
        vllm_importance_sampling_correction=True,
        vllm_importance_sampling_mode="sequence_mask",
    )
    if mode == "colocate":
        settings["vllm_gpu_memory_utilization"] = gpu_memory_utilization
    return settings


def _group_seed(seed: int, step: int, group: int) -> int:
    return ((seed * SEED_STRIDE + step) * SEED_STRIDE + group) % 2**63


def by_group_rollout(seed: int = 0):
    """A TRL ``rollout_func`` that samples each group of ``num_generations`` completions with
    :func:`kimi_mini.rollout.sample`, seeded by ``(seed, step, the group's index in the global batch)``:
    the samples do not depend on how many processes share the batch. Text prompts only; the policy must
    be a plain module on one device (not ZeRO-3 sharded)."""

    def rollout(prompts: list, trainer) -> dict:
        g = trainer.num_generations
        if len(prompts) % g or any(isinstance(p, list) for p in prompts):
            raise ValueError(f"by_group_rollout needs whole groups of {g} text prompts, got {len(prompts)} prompts")
        offset = trainer.accelerator.process_index * len(prompts)  # this process's first row in the global batch
        prompt_ids, completion_ids = [], []
        for start in range(0, len(prompts), g):
            if len(set(prompts[start : start + g])) != 1:
                raise ValueError(f"prompts {start}..{start + g - 1} are not one group")
            group_seed = _group_seed(seed, trainer.state.global_step, (offset + start) // g)
            rollouts = sample(
                trainer.model, trainer.processing_class, [prompts[start]], g, trainer.max_completion_length,
                trainer.temperature, seed=group_seed,
            )  # fmt: skip
            ids = trainer.processing_class(prompts[start])["input_ids"]
            for row, n in zip(rollouts.response_ids.tolist(), rollouts.lengths.tolist()):
                prompt_ids.append(ids)
                completion_ids.append(row[:n])  # up to and including end-of-sequence, as TRL's generation
        return dict(prompt_ids=prompt_ids, completion_ids=completion_ids, logprobs=None)

    return rollout


def _recorded(reward, log: list):
    """``reward`` that first appends (step, the problems of its batch, in order) to ``log``."""

    @functools.wraps(reward)  # keeps the name TRL logs under and num_generations
    def recorded(*args, **kwargs):
        state = kwargs.get("trainer_state")
        log.append(dict(step=state.global_step if state is not None else None, problems=list(kwargs["problem"])))
        return reward(*args, **kwargs)

    return recorded


def launch_command(config: str = "cpu-2proc", processes: int | None = None, flags: str = "--out runs/trl") -> str:
    """The ``accelerate launch`` command that runs this module with a shipped config (:data:`CONFIGS`),
    absolute paths included; ``processes`` overrides the config's ``num_processes``."""
    if config not in CONFIGS:
        raise ValueError(f"config = {config!r} is invalid: it must be one of {', '.join(map(repr, CONFIGS))}")
    accelerate_file, deepspeed_file = CONFIGS[config]
    parts = ["accelerate launch", f"--config_file {shlex.quote(str(CONFIG_DIR / accelerate_file))}"]
    if deepspeed_file is not None:
        parts.append(f"--deepspeed_config_file {shlex.quote(str(CONFIG_DIR / deepspeed_file))}")
    if processes is not None:
        parts.append(f"--num_processes {processes}")
    return " ".join([*parts, "-m kimi_mini.scaleout", flags])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kimi_mini.scaleout", description="OMDTrainer with the k1.5 rewards, on one process or many"
    )
    add = parser.add_argument
    add("--out", help="directory for policy/, result.json and groups-rank*.json")
    add("--policy", default=None, help="policy directory or hub name (default: the shipped warm-up policy)")
    add("--prompt-style", choices=("trace", "chat"), default="trace", help="chat: a pretrained instruction model")
    add("--steps", type=int, default=4, help="optimizer steps")
    add("--prompts", type=int, default=4, help="prompts per step, all processes together")
    add("--num-generations", type=int, default=4, help="completions per prompt (the report's k)")
    add("--num-iterations", type=int, default=2, help="optimizer steps on each batch of samples")
    add("--max-completion-length", type=int, default=64)
    add("--lr", type=float, default=1e-4)
    add("--tau", type=float, default=1.0, help="OMD's KL strength")
    add("--length-weight", type=float, default=1.0, help="weight of the k1.5 length reward")
    add("--length-warmup-steps", type=int, default=0, help="optimizer steps before the length reward starts")
    add("--seed", type=int, default=0)
    add(
        "--sampler",
        choices=("trl", "by-group"),
        default="trl",
        help="by-group: the same samples on any number of processes",
    )
    add("--vllm", choices=("colocate", "server"), default=None, help="generate with vLLM (needs vllm installed)")
    add("--cpu", action="store_true", help="run on the CPU even where CUDA is available")
    add("--launch-command", choices=tuple(CONFIGS), default=None, help="print the accelerate command and exit")
    return parser


def _trainer(args, out: Path, layout: list):
    from .policy import load_policy
    from .trl import OMDTrainer, countdown_dataset, countdown_reward, make_length_reward
    from .warmup import load_warmup_policy

    policy, tokenizer = load_warmup_policy() if args.policy is None else load_policy(args.policy)
    extra = {}
    if args.vllm is not None:
        extra = vllm_settings(args.vllm)
        if not extra:
            raise SystemExit("--vllm needs vLLM: pip install vllm (on a CUDA machine), or leave --vllm out")
    config = grpo_config(
        out, int(os.environ.get("WORLD_SIZE", "1")), args.prompts, args.num_generations, args.steps,
        cpu=True if args.cpu else None, max_completion_length=args.max_completion_length,
        num_iterations=args.num_iterations, learning_rate=args.lr, seed=args.seed, **extra,
    )  # fmt: skip
    generations = -(-args.steps // args.num_iterations)
    dataset = countdown_dataset(args.prompts * (generations + 1), seed=args.seed + 1, style=args.prompt_style)
    dataset = dataset.add_column("problem", list(range(len(dataset))))
    length = make_length_reward(args.num_generations, args.length_weight, args.length_warmup_steps)
    trainer = OMDTrainer(
        model=policy,
        reward_funcs=[countdown_reward, _recorded(length, layout)],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        tau=args.tau,
        rollout_func=by_group_rollout(args.seed) if args.sampler == "by-group" else None,
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _backend() -> str | None:
    dist = torch.distributed
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def main(argv=None) -> dict | None:
    """Train (or with ``--launch-command``, print the launch command); returns the result on the main process."""
    args = _parser().parse_args(argv)
    if args.launch_command is not None:
        flags = ZERO2_FLAGS
        print(launch_command(args.launch_command, flags=flags if args.launch_command == "zero2" else "--out runs/trl"))
        return None
    if args.out is None:
        _parser().error("--out is required")
    set_threads()
    out, layout = Path(args.out), []
    trainer = _trainer(args, out, layout)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(out / "policy"))  # every process calls it (ZeRO gathers); the main one writes
    rank = trainer.accelerator.process_index
    (out / f"groups-rank{rank}.json").write_text(json.dumps(layout) + "\n")
    if not trainer.accelerator.is_main_process:
        return None
    cfg = trainer.args
    result = dict(
        processes=trainer.accelerator.num_processes,
        backend=_backend(),
        device=str(trainer.accelerator.device),
        global_batch=cfg.per_device_train_batch_size * trainer.accelerator.num_processes,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        settings={k: v for k, v in vars(args).items() if k not in ("out", "launch_command")},
        seconds=seconds,
        log_history=trainer.state.log_history,
        versions=versions(),
    )
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['processes']} process(es), {args.steps} steps in {seconds:.1f} s; weights in {out / 'policy'}")
    return result


if __name__ == "__main__":
    main()
