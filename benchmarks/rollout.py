"""Throughput of kimi_mini's sampler against model.generate, on the warm-up policy, in one run.

    python benchmarks/rollout.py [--prompts 64] [--group-size 8] [--max-new-tokens 480] [--threads 1]

Four timings of the same job (``prompts`` x ``group_size`` responses of up to ``max_new_tokens``):
- ``model.generate(do_sample=True)`` with transformers' default (dynamic) KV cache;
- the same with ``cache_implementation="static"`` (a preallocated cache: no copy as it grows);
- ``kimi_mini.rollout.sample``, which drops finished rows from the batch and the cache;
- the forward-only floor: the time of the sampler's own forward passes alone, for its token schedule.
Tokens per second count response tokens up to and including end-of-sequence (no padding).
Writes a JSON summary to stdout; ``--save`` also stores it, with the date and machine, as
``kimi_mini/results/rollout-cpu.json``, which chapter 2 reads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing
from kimi_mini.device import set_threads
from kimi_mini.rollout import sample
from kimi_mini.tasks import make_problems, prompt_text
from kimi_mini.warmup import load_warmup_policy


def time_generate(model, tokenizer, prompts, group_size, max_new_tokens, seed, cache_implementation=None) -> dict:
    """model.generate on the repeated prompts; returns seconds and useful (pre-padding) response tokens."""
    enc = tokenizer([p for p in prompts for _ in range(group_size)], return_tensors="pt", padding=True)
    enc = enc.to(model.device)
    torch.manual_seed(seed)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        cache_implementation=cache_implementation,
    )
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    response = out[:, enc["input_ids"].shape[1] :]  # (B, T)
    is_eos = response == tokenizer.eos_token_id
    first_eos = torch.where(
        is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], response.shape[1], dtype=torch.long)
    )
    return dict(seconds=seconds, tokens=int(first_eos.sum()), steps=response.shape[1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=480)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", action="store_true", help="store the result in kimi_mini/results/")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    model, tokenizer = load_warmup_policy()
    prompts = [prompt_text(p) for p in make_problems(args.prompts, seed=777)]
    sample(model, tokenizer, prompts[:2], group_size=2, max_new_tokens=8)  # warm up kernels
    gen = time_generate(model, tokenizer, prompts, args.group_size, args.max_new_tokens, args.seed)
    static = time_generate(model, tokenizer, prompts, args.group_size, args.max_new_tokens, args.seed, "static")
    ours = sample(
        model, tokenizer, prompts, group_size=args.group_size, max_new_tokens=args.max_new_tokens, seed=args.seed
    ).stats
    result = dict(
        config=dict({k: v for k, v in vars(args).items() if k != "save"}, threads=threads, torch=torch.__version__),
        generate=dict(gen, tokens_per_second=gen["tokens"] / gen["seconds"]),
        generate_static=dict(static, tokens_per_second=static["tokens"] / static["seconds"]),
        sampler=dict(ours, tokens_per_second=ours["tokens"] / ours["seconds"]),
        forward_floor=dict(seconds=ours["forward_seconds"], tokens_per_second=ours["tokens"] / ours["forward_seconds"]),
    )
    result["speedup_vs_generate"] = result["sampler"]["tokens_per_second"] / result["generate"]["tokens_per_second"]
    result["speedup_vs_generate_static"] = (
        result["sampler"]["tokens_per_second"] / result["generate_static"]["tokens_per_second"]
    )
    result["same_tokens_as_generate"] = gen["tokens"] == ours["tokens"]  # torch's multinomial is the same race
    result["sampler_over_floor"] = ours["seconds"] / ours["forward_seconds"]
    result["measured"] = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{os.cpu_count()}-core {platform.machine()} CPU, {threads} torch thread(s)",
        command="python benchmarks/rollout.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    print(json.dumps(result, indent=1))
    if args.save:
        out = Path(__file__).resolve().parents[1] / "kimi_mini" / "results" / "rollout-cpu.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
