"""The ``kimi-mini`` command line: ``kimi-mini info | warmup | evaluate | train | plot``.

Every subcommand calls the same functions the chapters call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_info(args) -> None:
    from .device import set_threads, versions

    set_threads()
    print(json.dumps(versions(), indent=1))


def _cmd_warmup(args) -> None:
    from .config import get_preset
    from .device import set_threads
    from .warmup import WARMUP_DIR, train_warmup_policy

    set_threads(args.threads)
    overrides = {"sft": {"steps": args.steps}} if args.steps else {}
    metrics = train_warmup_policy(get_preset(args.preset, **overrides), args.out or WARMUP_DIR, n_eval=args.n_eval)
    print(json.dumps({k: metrics[k] for k in ("parameters", "eval", "sha256")}, indent=1))


def _cmd_evaluate(args) -> None:
    from .config import SampleConfig
    from .device import get_device, set_threads
    from .evaluation import evaluate_policy, summarize_by_difficulty
    from .tasks import make_problems
    from .warmup import EVAL_SEED, WARMUP_DIR, load_warmup_policy

    cfg = SampleConfig(temperature=args.temperature, max_new_tokens=args.max_new_tokens)  # validate first
    set_threads(args.threads)
    model, tokenizer = load_warmup_policy(get_device(), args.policy or WARMUP_DIR)
    records = evaluate_policy(model, tokenizer, make_problems(args.n, EVAL_SEED), cfg, seed=args.seed)
    print(json.dumps(summarize_by_difficulty(records), indent=1))


def _cmd_train(args) -> None:
    from .config import RLConfig, get_rl_preset
    from .device import get_device, set_threads
    from .policy import save_policy
    from .train import train_rl
    from .warmup import WARMUP_DIR, load_warmup_policy

    given = _config_file(args.config, RLConfig) if args.config else {}
    given.update(
        {f.name: getattr(args, f.name) for f in dataclasses.fields(RLConfig) if getattr(args, f.name) is not None}
    )
    # the preset, then the file, then flags; validated before anything loads
    cfg = get_rl_preset(args.preset, check_positions=args.policy is None, **given)
    shipped = {"cpu-tiny": WARMUP_DIR, "cpu-small": WARMUP_DIR.with_name("warmup-cpu-small")}
    if args.policy is None and args.preset not in shipped:
        raise ValueError(
            f"preset {args.preset!r} has no shipped warm-up policy: train one with `kimi-mini warmup --preset "
            f"{args.preset} --out DIR`, then pass --policy DIR"
        )
    set_threads(args.threads)
    model, tokenizer = load_warmup_policy(get_device(), args.policy or shipped[args.preset])
    history = train_rl(model, tokenizer, cfg, args.out, progress=not args.quiet)
    save_policy(model, tokenizer, Path(args.out) / "policy")
    last = history[-1]
    accuracy = [row["eval_accuracy"] for row in history if "eval_accuracy" in row]
    print(
        json.dumps(
            dict(
                iterations=len(history),
                reward=last["reward"],
                held_out_accuracy=accuracy,
                policy=str(Path(args.out) / "policy"),
            ),
            indent=1,
        )
    )


def _config_file(path: str, cls) -> dict:
    """The settings of a JSON file (an object of ``cls`` fields); flags given on the command line win."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object of {cls.__name__} fields, not {type(values).__name__}")
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
    history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    out = Path(args.out or run_dir / "metrics.png")
    plot_run(history, out, title=args.title or str(run_dir))
    print(json.dumps(dict(iterations=len(history), figure=str(out)), indent=1))


def _yes_no(text: str) -> bool:
    if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a yes/no value (true, false, yes, no, 1, 0)")
    return text.lower() in ("true", "yes", "1")


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of a config dataclass (``--grad-steps 8``), defaulting to the dataclass's value."""
    for f in dataclasses.fields(cls):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_yes_no if isinstance(f.default, bool) else type(f.default),
            default=None,
            help=f"{f.metadata['doc']} (default {f.default!r})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kimi-mini", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and device").set_defaults(func=_cmd_info)
    p = sub.add_parser("warmup", help="train and save the warm-up policy")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--out", default=None, help="directory (default: the shipped checkpoint)")
    p.add_argument("--steps", type=int, default=None, help="override SFTConfig.steps")
    p.add_argument("--n-eval", type=int, default=512)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_warmup)
    p = sub.add_parser("evaluate", help="sample and score a policy on held-out problems")
    p.add_argument("--policy", default=None, help="directory or hub name (default: the shipped warm-up)")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("train", help="RL from a policy (default: the shipped warm-up); resumes from --out")
    p.add_argument("--out", required=True, help="run directory: metrics.jsonl, checkpoints, the final policy")
    p.add_argument("--policy", default=None, help="starting policy directory (default: the shipped warm-up)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .config import RLConfig

    p.add_argument("--preset", default="cpu-tiny", help="RL settings to start from: cpu-tiny, cpu-small or gpu")
    p.add_argument("--config", default=None, help="JSON file of RLConfig settings over the preset's; flags override it")
    _add_config_flags(p, RLConfig)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("plot", help="draw a training run's metrics to PNG (matplotlib) or HTML (plotly)")
    p.add_argument("run", help="the run directory (the --out of train)")
    p.add_argument("--out", default=None, help="file ending in .png or .html (default: RUN/metrics.png)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=_cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"kimi-mini: error: {err}", file=sys.stderr)
        return 2
    return 0
