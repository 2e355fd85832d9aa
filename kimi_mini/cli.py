"""The ``kimi-mini`` command line: ``kimi-mini info | warmup | evaluate | train | recipe | plot``.

Every subcommand calls the same functions the chapters call. ``kimi-mini COMMAND --help`` lists a
command's options; ``train --help`` lists every RL setting with its meaning and default.

Flags are parsed and settings validated before torch loads, so a mistake is reported at once. Errors are
one line (``kimi-mini: error: ...``, exit status 2), never a traceback; so are warnings about valid
settings that usually waste a run. Commands write only where ``--out`` says, never into the shipped
checkpoints, and a run directory has one writer at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _quiet_transformers() -> None:
    """No "Loading weights" / "Writing model shards" bars from transformers and the hub between our lines."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _warn(message: str) -> None:
    print(f"kimi-mini: warning: {message}", file=sys.stderr)


def _cmd_info(args) -> None:
    from .device import set_threads, versions

    set_threads()
    print(json.dumps(versions(), indent=1))


def _cmd_warmup(args) -> None:
    from .config import get_preset

    overrides = {"sft": {"steps": args.steps}} if args.steps is not None else {}
    cfg = get_preset(args.preset, **overrides)  # validated before torch loads
    _check_writable(args.out, args.replace_shipped, args.preset)
    _quiet_transformers()
    from .device import set_threads
    from .rundir import run_lock
    from .warmup import train_warmup_policy

    set_threads(args.threads)
    with run_lock(args.out):  # one writer per output directory, as for train and recipe
        metrics = train_warmup_policy(
            cfg, args.out, n_eval=args.n_eval, replace_shipped=args.replace_shipped, preset=args.preset
        )
    print(json.dumps({k: metrics[k] for k in ("parameters", "eval", "sha256")}, indent=1))


def _check_writable(out: str, replace_shipped: bool = False, preset: str | None = None) -> None:
    """No command writes into the shipped checkpoints (``kimi-mini warmup --replace-shipped`` aside);
    checked before torch loads (``rundir`` does not import it)."""
    from .rundir import is_shipped

    if is_shipped(out) or replace_shipped:
        from .warmup import check_writable

        check_writable(Path(out).expanduser().resolve(), replace_shipped, preset)


def _cmd_evaluate(args) -> None:
    from .config import SampleConfig, get_preset

    cfg = SampleConfig(temperature=args.temperature, max_new_tokens=args.max_new_tokens)  # validate first
    task = get_preset(args.preset).task
    _quiet_transformers()
    from .device import get_device, set_threads
    from .evaluation import evaluate_policy, summarize_by_difficulty
    from .tasks import make_problems
    from .warmup import EVAL_SEED, WARMUP_DIR

    set_threads(args.threads)
    model, tokenizer = _start_policy(args.policy or WARMUP_DIR, get_device(), args.dtype)
    problems = make_problems(args.n, EVAL_SEED, task)
    records = evaluate_policy(
        model, tokenizer, problems, cfg, seed=args.seed, prompt_style=args.prompt_style, progress=not args.quiet
    )
    print(json.dumps(summarize_by_difficulty(records), indent=1))


def _cmd_train(args) -> None:
    from .config import RLConfig, get_preset, get_rl_preset, risky_settings

    given = _config_file(args.config, RLConfig) if args.config else {}
    given.update(
        {f.name: getattr(args, f.name) for f in dataclasses.fields(RLConfig) if getattr(args, f.name) is not None}
    )
    # the preset, then the file, then flags; validated before anything loads
    cfg = get_rl_preset(args.preset, check_positions=args.policy is None, **given)
    from .rundir import SHIPPED_WARMUPS

    if args.policy is None and args.preset not in SHIPPED_WARMUPS:
        raise ValueError(
            f"preset {args.preset!r} has no shipped warm-up policy: train one with `kimi-mini warmup --preset "
            f"{args.preset} --out DIR`, then pass --policy DIR"
        )
    _check_writable(args.out)
    for message in risky_settings(cfg, args.preset):
        _warn(message)
    _quiet_transformers()
    from .rundir import run_lock

    with run_lock(args.out):  # one writer per run directory, from here to the saved policy
        if (Path(args.out) / "checkpoint.json").exists() and not args.resume:
            raise ValueError(f"{args.out} holds a run already: pass --resume to continue it, or choose another --out")
        history = _train(args, cfg, get_preset(args.preset).task)
    print(json.dumps(_train_summary(history, args.out), indent=1))


def _train(args, cfg, task_cfg) -> list[dict]:
    from .device import get_device, set_threads
    from .policy import save_policy
    from .rundir import SHIPPED_WARMUPS
    from .train import train_rl

    set_threads(args.threads)
    model, tokenizer = _start_policy(args.policy or SHIPPED_WARMUPS[args.preset], get_device(), args.dtype)
    history = train_rl(model, tokenizer, cfg, args.out, task_cfg, resume=args.resume, progress=not args.quiet)
    save_policy(model, tokenizer, Path(args.out) / "policy")
    return history


def _train_summary(history: list[dict], out: str) -> dict:
    """What ``kimi-mini train`` prints: the last reward, and each held-out accuracy with the number of
    iterations done when it was measured (the x axis of ``kimi-mini plot``)."""
    accuracy = [
        dict(iterations_done=row["iteration"] + 1, accuracy=row["eval_accuracy"])
        for row in history
        if "eval_accuracy" in row
    ]
    rewards = [row["reward"] for row in history if "reward" in row]
    return dict(
        iterations=len(history),
        reward=rewards[-1] if rewards else None,
        held_out_accuracy=accuracy,
        policy=str(Path(out) / "policy"),
    )


def _is_local(name_or_path) -> bool:
    """A local path rather than a hub name: it exists, looks like a path, or its folder exists (``runs/nope``
    when there is a ``runs`` folder); a hub name is ``owner/name`` with neither."""
    text = str(name_or_path)
    local = Path(text).expanduser()
    return local.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1 or local.parent.is_dir()


def _start_policy(name_or_path, device, dtype: str | None):
    """A local policy directory (clear error if it is not one), or a hub name such as Qwen/Qwen2.5-0.5B-Instruct."""
    import torch

    from .policy import load_local_policy, load_policy

    torch_dtype = getattr(torch, dtype) if dtype else None
    if torch.device(device).type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: float32 weights at tensor-core speed
    if _is_local(name_or_path):
        model, tokenizer = load_local_policy(Path(name_or_path).expanduser(), device, regenerate="make warmup")
        return (model.to(torch_dtype) if torch_dtype else model), tokenizer
    try:
        model, tokenizer = load_policy(str(name_or_path), device, dtype=torch_dtype)  # a hub name: downloads
    except OSError as err:
        raise OSError(
            f"{name_or_path} is not a local directory, and loading it from the Hugging Face hub failed: "
            f"{str(err).strip().splitlines()[0]}"
        ) from err
    return model.eval(), tokenizer


def _cmd_recipe(args) -> None:
    from .recipe import recipe_config

    given = _json_object(args.config, "recipe") if args.config else {}
    preset = given.pop("preset", args.preset)
    if args.iterations is not None:  # flags win over the file
        given["rl"] = {**given.get("rl", {}), "iterations": args.iterations}
    if args.sft_steps is not None:
        given["sft"] = {**given.get("sft", {}), "steps": args.sft_steps}
    cfg = recipe_config(preset, **given)  # validated before anything runs
    if args.shipped_warmup and preset != "cpu-tiny":
        raise ValueError("--shipped-warmup is the cpu-tiny warm-up; it needs --preset cpu-tiny")
    _check_writable(args.out)
    _quiet_transformers()
    from .device import set_threads
    from .recipe import run_recipe
    from .rundir import run_lock
    from .warmup import WARMUP_DIR

    set_threads(args.threads)
    warmup_from = WARMUP_DIR if args.shipped_warmup else None
    with run_lock(args.out):
        result = run_recipe(cfg, args.out, resume=args.resume, warmup_from=warmup_from, progress=not args.quiet)
    keys = ("stage", "eval_accuracy", "eval_tokens", "seconds")
    print(json.dumps([{k: row[k] for k in keys} for row in result["stages"]], indent=1))


def _json_object(path: str, what: str) -> dict:
    """The JSON object in the file at ``path``; clear errors for a missing file, bad JSON or another type."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object of {what} settings, not {type(values).__name__}")
    return values


def _config_file(path: str, cls) -> dict:
    """The settings of a JSON file (an object of ``cls`` fields); flags given on the command line win."""
    values = _json_object(path, cls.__name__)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{path}: unknown {cls.__name__} field(s) {unknown}; the fields are {sorted(fields)}")
    return values


def _cmd_plot(args) -> None:
    from .viz import plot_run

    run_dir = Path(args.run)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}: is it the --out directory of `kimi-mini train`?")
    try:
        history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ValueError(f"{metrics} is damaged (not JSON lines: {err})") from err
    out = Path(args.out or run_dir / "metrics.png")
    plot_run(history, out, title=args.title or str(run_dir), plotly_js=args.plotly_js)
    print(json.dumps(dict(iterations=len(history), figure=str(out)), indent=1))


def _positive(text: str) -> int:
    """An integer of at least 1, for counts such as ``--n`` and ``--steps``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid: it must be at least 1")
    return value


def _yes_no(text: str) -> bool:
    if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a yes/no value (true, false, yes, no, 1, 0)")
    return text.lower() in ("true", "yes", "1")


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of a config dataclass (``--grad-steps 8``), in its own help section, with the
    field's doc, default and allowed values."""
    group = parser.add_argument_group(f"{cls.__name__} settings (override the preset and --config)")
    for f in dataclasses.fields(cls):
        choices = f.metadata["choices"]
        if isinstance(f.default, bool):
            kind, metavar = _yes_no, "{true,false}"
        elif choices is not None:
            kind, metavar = type(f.default), "{" + ",".join(map(str, choices)) + "}"
        else:
            kind, metavar = type(f.default), "N" if isinstance(f.default, int) else "X"
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            default=None,
            metavar=metavar,
            help=f"{f.metadata['doc']} (default {f.default!r})",
        )


_THREADS = "torch CPU threads (default: 1 on machines with up to 4 cores, else half the cores)"
_EXAMPLES = """examples:
  kimi-mini train --out runs/omd --iterations 16         # RL from the shipped warm-up policy
  kimi-mini train --out runs/omd --iterations 24 --resume # continue it
  kimi-mini recipe --out runs/recipe                     # warm-up, RL, long2short, one table
  kimi-mini plot runs/omd --out runs/omd/metrics.html    # a run's metrics
  kimi-mini COMMAND --help                               # a command's options"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kimi-mini",
        description="Kimi k1.5's reinforcement learning recipe in miniature; every command calls the functions "
        "the book's chapters build.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="versions and device").set_defaults(func=_cmd_info)
    p = sub.add_parser("warmup", help="train and save a warm-up policy")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--out", required=True, help="directory to write the policy to")
    p.add_argument(
        "--replace-shipped",
        action="store_true",
        help="allow --out to be the preset's shipped warm-up (kimi_mini/checkpoints/warmup-PRESET): `make warmup`",
    )
    p.add_argument("--steps", type=_positive, default=None, metavar="N", help="override SFTConfig.steps")
    p.add_argument("--n-eval", type=_positive, default=512, metavar="N", help="held-out problems to score it on")
    p.add_argument("--threads", type=_positive, default=None, metavar="N", help=_THREADS)
    p.set_defaults(func=_cmd_warmup)
    p = sub.add_parser("evaluate", help="sample and score a policy on held-out problems")
    p.add_argument("--policy", default=None, help="directory or hub name (default: the shipped warm-up)")
    p.add_argument("--preset", default="cpu-tiny", help="the task settings of this preset (numbers up to 9 for gpu)")
    p.add_argument("--prompt-style", default="trace", choices=("trace", "chat"), help="chat: a pretrained chat model")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"), help="weights' dtype")
    p.add_argument("--n", type=_positive, default=256, metavar="N", help="held-out problems")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive, default=None, metavar="N", help=_THREADS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("train", help="RL from a policy (default: the shipped warm-up)")
    p.add_argument("--out", required=True, help="run directory: metrics.jsonl, checkpoints, the final policy")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--dtype", default=None, choices=("float32", "bfloat16", "float16"), help="weights' dtype (default: as saved)"
    )
    p.add_argument(
        "--policy",
        default=None,
        help="starting policy: a directory, or a hub name like Qwen/Qwen2.5-0.5B-Instruct with --prompt-style chat "
        "(default: the preset's shipped warm-up)",
    )
    p.add_argument("--threads", type=_positive, default=None, metavar="N", help=_THREADS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .config import RLConfig  # standard library only: --help and bad flags need no torch

    p.add_argument("--preset", default="cpu-tiny", help="RL settings to start from: cpu-tiny, cpu-small or gpu")
    p.add_argument("--config", default=None, help="JSON file of RLConfig settings over the preset's; flags override it")
    _add_config_flags(p, RLConfig)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("recipe", help="the whole recipe: warm-up SFT, RL, long2short, one results table")
    p.add_argument("--out", required=True, help="run directory: one folder per stage and results.json")
    p.add_argument("--preset", default="cpu-tiny", help="cpu-tiny, cpu-small or gpu")
    p.add_argument("--config", default=None, help="JSON file: {preset, sft: {...}, rl: {...}, long2short: {...}}")
    p.add_argument("--iterations", type=_positive, default=None, metavar="N", help="override rl.iterations")
    p.add_argument("--sft-steps", type=_positive, default=None, metavar="N", help="override sft.steps")
    p.add_argument("--shipped-warmup", action="store_true", help="start from the shipped cpu-tiny warm-up")
    p.add_argument("--resume", action="store_true", help="skip finished stages, continue RL from its checkpoint")
    p.add_argument("--threads", type=_positive, default=None, metavar="N", help=_THREADS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_recipe)
    p = sub.add_parser("plot", help="draw a training run's metrics to PNG (matplotlib) or HTML (plotly)")
    p.add_argument("run", help="the run directory (the --out of train)")
    p.add_argument("--out", default=None, help="file ending in .png or .html (default: RUN/metrics.png)")
    p.add_argument("--title", default=None)
    p.add_argument(
        "--plotly-js",
        default="inline",
        choices=("inline", "cdn"),
        help="HTML only: embed plotly.js (4.8 MB, opens offline; the default) or load it from its CDN (small, "
        "for sharing; needs a network to open)",
    )
    p.set_defaults(func=_cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, MemoryError, ArithmeticError) as err:
        # OSError: missing files, a hub name that does not exist; MemoryError: settings too big for the
        # device; ArithmeticError: a loss that became NaN. All say what happened in one line.
        print(f"kimi-mini: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0
