"""Reward models and prompt curation, measured (chapter 10).

    python benchmarks/reward_models.py --save [--ship]

Stages (``--stages``, all by default; each writes its part to ``--work`` and is skipped when that part
exists, so two processes can run different stages and a last call merges them):

- ``rms``: the warm-up policy answers ``--train-responses`` problems; a classic and two chain-of-thought
  reward models are trained on them, one with ``--counterfactual-share`` of the answers replaced and one
  (``cot_plain``) without (``--ship`` writes the classic and the first to ``kimi_mini/checkpoints``); all
  judge the warm-up's responses to 512 held-out problems (one per seed), against the verifier;
- ``rl``: RL from the warm-up with the verifier, the classic or the chain-of-thought model as the reward
  (same settings, seeds ``--seeds``): training reward, the verifier's accuracy on the training samples
  and held-out accuracy over the iterations; at the end one response per held-out problem, scored by the
  verifier and both reward models (the reward models on a trained policy's responses);
- ``curation``: each seed's training pool, the warm-up's passes in 10 samples per problem and the guess
  filter; RL on the uniform pool sampler with the whole pool and with the curated one.

``--save`` writes ``kimi_mini/results/reward-models-cpu.json`` with the settings and per-seed,
per-problem 0/1 arrays.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kimi_mini import reward_models as rmod  # noqa: E402
from kimi_mini.config import TaskConfig, get_rl_preset  # noqa: E402
from kimi_mini.device import set_threads, versions  # noqa: E402
from kimi_mini.rollout import sample  # noqa: E402
from kimi_mini.sampling import ProblemPool, guessable  # noqa: E402
from kimi_mini.tasks import HELDOUT_SEED, make_problems, policy_prompts, verify  # noqa: E402
from kimi_mini.train import save_checkpoint, train_rl  # noqa: E402
from kimi_mini.warmup import load_warmup_policy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "kimi_mini" / "results" / "reward-models-cpu.json"
RM_TRAIN_SEED = 30_000_001  # the reward models' training responses: problems and sampling noise
HISTORY_KEYS = ("iteration", "reward", "accuracy", "response_tokens", "eval_accuracy", "eval_tokens")


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def heldout_responses(policy, tokenizer, seed: int, n: int) -> tuple[list, list[str]]:
    """One response (temperature 1, sampling noise from ``seed``) to each of ``n`` held-out problems, the
    same problems for every seed (those of :func:`kimi_mini.train.heldout_metrics` for seed 0), so that
    results are (seeds, problems) arrays paired by problem."""
    problems = make_problems(n, seed=HELDOUT_SEED)
    rollouts = sample(policy, tokenizer, policy_prompts(problems, tokenizer), 1, 480, 1.0, seed=seed)
    return problems, rollouts.texts


JUDGES = ("classic", "cot", "cot_plain")  # cot_plain: the chain-of-thought judge without counterfactuals


def judge_all(judges, problems, texts) -> dict:
    """The verifier's 0/1, the classic model's probability (3 decimals) and each chain-of-thought model's
    verdict (the verifier's only if ``judges`` is None)."""
    out = dict(verifier=[verify(p, t) for p, t in zip(problems, texts)])
    for name, (model, tok) in (judges or {}).items():
        if name == "classic":
            out[name] = [round(v, 3) for v in rmod.classic_rewards(model, tok, problems, texts).tolist()]
        else:
            out[name] = [int(v) for v in rmod.cot_rewards(model, tok, problems, texts).tolist()]
    return out


def _trained(name: str, args, work: Path, policy, tokenizer, data) -> tuple:
    """The reward model ``name``, trained on ``data`` (problems, texts, labels) unless ``work`` holds it."""
    path, info_path = work / f"rm-{name}", work / f"rm-{name}.json"
    if path.exists() and info_path.exists():
        return rmod.load_reward_model(path)[0], json.loads(info_path.read_text())
    problems, texts, labels = data
    start = time.perf_counter()
    if name == "classic":
        model = rmod.build_classic_rm(policy)
        loss = rmod.train_classic_rm(model, tokenizer, problems, texts, labels, epochs=args.rm_epochs)
    else:
        model = rmod.build_cot_rm(policy)
        share = args.counterfactual_share if name == "cot" else 0.0
        loss = rmod.train_cot_rm(model, tokenizer, problems, texts, epochs=args.rm_epochs, counterfactual_share=share)
    info = dict(loss=loss, seconds=time.perf_counter() - start)
    rmod.save_reward_model(model, tokenizer, path)
    _write(info_path, info)
    return model, info


def stage_rms(args, work: Path) -> None:
    out = work / "rms.json"
    if out.exists():
        return
    policy, tokenizer = load_warmup_policy()
    start = time.perf_counter()
    data = rmod.sample_responses(policy, tokenizer, args.train_responses, RM_TRAIN_SEED)
    sampled = time.perf_counter() - start
    judges, infos = {}, {}
    for name in JUDGES:
        model, infos[name] = _trained(name, args, work, policy, tokenizer, data)
        judges[name] = (model, tokenizer)
        if args.ship and name != "cot_plain":
            target = ROOT / "kimi_mini" / "checkpoints" / f"reward-{name}-cpu-tiny"
            shutil.rmtree(target, ignore_errors=True)
            rmod.save_reward_model(model, tokenizer, target)
    heldout = {}
    for seed in args.seeds:
        hp, ht = heldout_responses(policy, tokenizer, seed, args.heldout)
        heldout[str(seed)] = judge_all(judges, hp, ht)
        if seed == args.seeds[0]:  # a few responses with their judgements, for the chapter's live re-run
            heldout[str(seed)]["texts"] = ht[: args.stored_texts]
    labels = data[2]
    result = dict(train_responses=len(labels), train_accuracy=sum(labels) / len(labels), sample_seconds=sampled)
    _write(out, dict(result, models=infos, heldout=heldout))
    print(f"rms: {json.dumps(dict(result, models=infos))}", flush=True)


def _load_judges(work: Path) -> dict:
    return {name: rmod.load_reward_model(work / f"rm-{name}") for name in JUDGES}


def _run_record(history: list[dict], policy, tokenizer, judges, seed: int, n: int, wall: float) -> dict:
    """A run's history (the documented keys) and its final held-out responses judged three ways."""
    problems, texts = heldout_responses(policy, tokenizer, seed, n)
    judged = judge_all(judges, problems, texts)
    wrong = [i for i, v in enumerate(judged["verifier"]) if v == 0]
    fooled = [i for i in wrong if judges and judged["classic"][i] > 0.5]
    fooled_cot = [i for i in wrong if judges and judged["cot"][i] == 1]
    return dict(
        history=[{k: row[k] for k in HISTORY_KEYS if k in row} for row in history],
        final=judged,
        fooled_classic=[
            dict(problem=str(problems[i]), text=texts[i], classic=judged["classic"][i]) for i in fooled[:8]
        ],
        fooled_cot=[dict(problem=str(problems[i]), text=texts[i]) for i in fooled_cot[:8]],
        seconds=wall,
    )


def stage_rl(args, work: Path) -> None:
    judges = None
    for reward in args.rewards:
        for seed in args.seeds:
            out = work / f"rl-{reward}-{seed}.json"
            if out.exists():
                continue
            judges = judges or _load_judges(work)
            policy, tokenizer = load_warmup_policy()
            cfg = get_rl_preset(
                iterations=args.iterations, eval_every=args.eval_every, eval_problems=args.heldout, seed=seed
            )
            reward_fn = None if reward == "verifier" else rmod.reward_function(*judges[reward])
            start = time.perf_counter()
            history = train_rl(policy, tokenizer, cfg, work / f"run-{reward}-{seed}", resume=False, progress=False,
                               reward_fn=reward_fn)  # fmt: skip
            record = _run_record(history, policy, tokenizer, judges, seed, args.heldout, time.perf_counter() - start)
            _write(out, dict(config=asdict(cfg), **record))
            last = record["history"][-1]
            print(f"rl {reward} seed {seed}: {json.dumps(last)} ({record['seconds']:.0f} s)", flush=True)


def _curated_start(run_dir: Path, policy, cfg, keep: list[bool]) -> None:
    """A run directory whose 'iteration -1' checkpoint holds the warm-up and the curated pool: train_rl
    resumes from it at iteration 0 with only the kept problems active."""
    pool = rmod.curated_pool(ProblemPool.build(cfg.pool_size, cfg.seed, TaskConfig()), keep)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    save_checkpoint(run_dir, policy, -1, [], cfg, pool=pool)


def stage_curation(args, work: Path) -> None:
    for seed in args.seeds:
        out = work / f"curation-{seed}.json"
        if out.exists():
            continue
        policy, tokenizer = load_warmup_policy()
        pool = ProblemPool.build(args.pool_size, seed, TaskConfig())
        start = time.perf_counter()
        counts = rmod.pass_counts(policy, tokenizer, pool.problems, samples=10, seed=seed)
        guessed = guessable(policy, tokenizer, pool.problems, seed=seed)
        keep = rmod.curate(counts, guessed)
        record = dict(
            counts=counts.tolist(),
            guessed=[int(g) for g in guessed],
            difficulty=[p.difficulty for p in pool.problems],
            keep=[int(k) for k in keep],
            seconds_difficulty=time.perf_counter() - start,
            runs={},
        )
        for name in ("whole", "curated"):
            policy, tokenizer = load_warmup_policy()
            cfg = get_rl_preset(
                iterations=args.iterations,
                eval_every=args.eval_every,
                eval_problems=args.heldout,
                sampling="uniform",
                pool_size=args.pool_size,
                seed=seed,
            )
            run_dir = work / f"run-pool-{name}-{seed}"
            if name == "curated":
                _curated_start(run_dir, policy, cfg, keep)
            start = time.perf_counter()
            history = train_rl(policy, tokenizer, cfg, run_dir, resume=name == "curated", progress=False)
            run = _run_record(history, policy, tokenizer, None, seed, args.heldout, time.perf_counter() - start)
            record["runs"][name] = dict(history=run["history"], final=run["final"]["verifier"], seconds=run["seconds"])
            print(f"curation seed {seed} {name}: {json.dumps(run['history'][-1])}", flush=True)
        _write(out, record)


def merge(args, work: Path) -> dict:
    rms = json.loads((work / "rms.json").read_text())
    first = rms["heldout"][str(args.seeds[0])]  # the stored responses, with each chain-of-thought judge's check
    problems = make_problems(len(first["texts"]), seed=HELDOUT_SEED)
    first["checks"] = {
        name: rmod.cot_judgements(model, tok, problems, first["texts"])
        for name, (model, tok) in _load_judges(work).items()
        if name != "classic"
    }
    rl = {}
    for reward in ("verifier", "classic", "cot"):
        for seed in args.seeds:
            path = work / f"rl-{reward}-{seed}.json"
            if path.exists():
                rl.setdefault(reward, {})[str(seed)] = json.loads(path.read_text())
    curation = {}
    for seed in args.seeds:
        path = work / f"curation-{seed}.json"
        if path.exists():
            curation[str(seed)] = json.loads(path.read_text())
    settings = {k: v for k, v in vars(args).items() if k not in ("save", "ship", "work", "stages")}
    settings.update(rm_train_seed=RM_TRAIN_SEED, heldout_seed=HELDOUT_SEED, judge_tail=rmod.JUDGE_TAIL)
    return dict(
        date=time.strftime("%Y-%m-%d"),
        machine=platform.processor() or platform.machine(),
        versions=versions(),
        settings=settings,
        rms=rms,
        rl=rl,
        curation=curation,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kimi-mini-reward-models"))
    parser.add_argument("--stages", nargs="+", default=["rms", "rl", "curation"], choices=["rms", "rl", "curation"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rewards", nargs="+", default=["verifier", "classic", "cot"])
    parser.add_argument("--train-responses", type=int, default=3072)
    parser.add_argument("--rm-epochs", type=int, default=3)
    parser.add_argument("--counterfactual-share", type=float, default=0.5)
    parser.add_argument("--heldout", type=int, default=512)
    parser.add_argument("--stored-texts", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--pool-size", type=int, default=512)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--ship", action="store_true", help="write the reward models to kimi_mini/checkpoints")
    args = parser.parse_args(argv)
    set_threads(1)
    torch.manual_seed(0)
    work = Path(args.work)
    stages = dict(rms=stage_rms, rl=stage_rl, curation=stage_curation)
    for name in args.stages:
        stages[name](args, work)
    result = merge(args, work)
    if args.save:
        _write(RESULT, result)
        print(f"wrote {RESULT}")
    return result


if __name__ == "__main__":
    main()
