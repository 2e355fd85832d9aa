"""Many processes through accelerate (kimi_mini.scaleout): two CPU processes against one, whole groups on
every process, and the shipped multi-GPU configs parse."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from kimi_mini.scaleout import CONFIG_DIR, CONFIGS, grpo_config, launch_command, vllm_settings
from kimi_mini.trl import check_whole_groups, countdown_reward, make_length_reward
from kimi_mini.warmup import WARMUP_DIR

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"
STEPS, PROMPTS, G = 4, 4, 4  # 4 optimizer steps, 2 of them sampling; global batch 4 prompts x 4 = 16 completions
# Measured: the two-process weights differ from the one-process ones by at most 3.6e-7 after the 4 steps
# (1 to 3 float32 ulps of weights of magnitude 1 to 4: the gradients are summed in another order), while
# the steps moved the weights by up to 4.0e-4. 1e-5 leaves a 28x margin above the measured difference and
# stays 40x below the change: a wrong batch, a lost gradient all-reduce or a double-counted loss would
# show as differences of the order of the change itself.
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, *launch_args: str) -> dict:
    """``accelerate launch ... -m kimi_mini.scaleout`` with split-invariant sampling; its result.json."""
    env = {**os.environ, "KIMI_MINI_THREADS": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    flags = ["--out", str(out), "--sampler", "by-group", "--steps", str(STEPS), "--prompts", str(PROMPTS)]
    flags += ["--num-generations", str(G), "--num-iterations", "2", "--max-completion-length", "64"]
    command = [str(ACCELERATE), "launch", *launch_args, "-m", "kimi_mini.scaleout", *flags]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def _layout(out: Path, processes: int) -> list[list[dict]]:
    return [json.loads((out / f"groups-rank{rank}.json").read_text()) for rank in range(processes)]


@pytest.mark.slow
def test_two_processes_end_where_one_process_ends(tmp_path):
    config = str(CONFIG_DIR / "accelerate-cpu-2proc.yaml")
    two = _launch(tmp_path / "two", "--config_file", config, "--main_process_port", str(_free_port()))
    one = _launch(tmp_path / "one", "--cpu", "--num_processes", "1")
    assert (two["processes"], two["backend"], two["per_device_train_batch_size"]) == (2, "gloo", 8)
    assert (one["processes"], one["backend"], one["per_device_train_batch_size"]) == (1, None, 16)
    assert two["global_batch"] == one["global_batch"] == PROMPTS * G

    # every process scored whole groups, and the two processes' shares are the one process's batch, in order
    shares, whole = _layout(tmp_path / "two", 2), _layout(tmp_path / "one", 1)[0]
    assert [call["step"] for call in whole] == [0, 2]  # samples drawn at steps 0 and 2, reused at 1 and 3
    for first, second, batch in zip(*shares, whole):
        assert first["step"] == second["step"] == batch["step"]
        for problems in (first["problems"], second["problems"]):
            assert len(problems) == PROMPTS // 2 * G
            assert all(len(set(problems[i : i + G])) == 1 for i in range(0, len(problems), G))
        assert not set(first["problems"]) & set(second["problems"])  # no group split between the processes
        assert first["problems"] + second["problems"] == batch["problems"]

    start = load_file(WARMUP_DIR / "model.safetensors")
    a = load_file(tmp_path / "one" / "policy" / "model.safetensors")
    b = load_file(tmp_path / "two" / "policy" / "model.safetensors")
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    print(f"max |one process - two processes| = {difference:.2e}; max |change| = {moved:.2e}")
    assert difference <= TOLERANCE < moved / 10, (difference, moved)
    losses = [[row["loss"] for row in run["log_history"] if "loss" in row] for run in (one, two)]
    assert len(losses[0]) == STEPS and torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), atol=1e-5)


def _process_shares(per_device: int, processes: int, num_generations: int, prompts: int = 12) -> list[list[int]]:
    """Which dataset rows each process receives first, built as GRPOTrainer and accelerate build them:
    TRL's RepeatSampler (each prompt num_generations times in a row), accelerate's per-process shards."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader
    from trl.trainer.utils import RepeatSampler

    shares = []
    for rank in range(processes):
        rows = list(range(prompts))
        generation_batch = per_device * processes
        sampler = RepeatSampler(rows, num_generations, generation_batch // num_generations, shuffle=True, seed=0)
        loader = DataLoader(rows, batch_size=per_device, sampler=sampler)
        shard = prepare_data_loader(loader, num_processes=processes, process_index=rank, put_on_device=False)
        shares.append(next(iter(shard)).tolist())
    return shares


def test_trl_splits_groups_when_a_process_share_is_not_whole_groups_and_that_is_refused():
    # 8 completions per process: whole groups, the layout the two-process run above recorded
    assert _process_shares(8, 2, 4) == [[8, 8, 8, 8, 0, 0, 0, 0], [5, 5, 5, 5, 9, 9, 9, 9]]
    # 6 per process: a 12-completion batch TRL accepts (3 groups of 4), but prompt 0's group is split
    first, second = _process_shares(6, 2, 4)
    assert first == [8, 8, 8, 8, 0, 0] and second == [0, 0, 5, 5, 5, 5]
    reward = make_length_reward(num_generations=4)
    prompts = [str(i) for i in first]
    with pytest.raises(ValueError, match="not whole groups of num_generations = 4"):
        reward(prompts, ["answer (1+1)+1"] * 6, [[1, 2]] * 6, [[1, 1, 1]] * 6, [3] * 6)
    split = SimpleNamespace(per_device_train_batch_size=6, steps_per_generation=1, num_generations=4)
    with pytest.raises(ValueError, match="split a prompt's group across processes"):
        check_whole_groups(split)
    whole = SimpleNamespace(per_device_train_batch_size=6, steps_per_generation=2, num_generations=4)
    check_whole_groups(whole, [countdown_reward, reward])  # 12 per process: whole groups
    with pytest.raises(ValueError, match="made for groups of 2"):
        check_whole_groups(whole, [make_length_reward(num_generations=2)])


def test_shipped_configs_parse_and_the_launch_commands_name_them(monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    cpu = load_config_from_file(str(CONFIG_DIR / "accelerate-cpu-2proc.yaml"))
    assert (cpu.num_processes, cpu.use_cpu, cpu.mixed_precision) == (2, True, "no")
    # accelerate starts local processes with torchrun for its multi-GPU type only; use_cpu keeps them on the CPU
    assert cpu.distributed_type == DistributedType.MULTI_GPU

    zero2 = load_config_from_file(str(CONFIG_DIR / "accelerate-zero2.yaml"))
    assert zero2.distributed_type == DistributedType.DEEPSPEED and (zero2.num_machines, zero2.num_processes) == (1, 8)
    deepspeed_file = ROOT / zero2.deepspeed_config["deepspeed_config_file"]
    assert deepspeed_file == CONFIG_DIR / "deepspeed-zero2.json"
    assert json.loads(deepspeed_file.read_text())["zero_optimization"]["stage"] == 2
    # as `accelerate launch` does: the config file's DeepSpeed keys must not clash with the JSON's settings
    fields = list(zero2.deepspeed_config) + (["mixed_precision"] if zero2.mixed_precision is not None else [])
    monkeypatch.setenv("ACCELERATE_CONFIG_DS_FIELDS", ",".join(fields).lower())
    plugin = DeepSpeedPlugin(hf_ds_config=str(deepspeed_file))
    plugin.set_mixed_precision("bf16")
    assert plugin.zero_stage == 2 and plugin.deepspeed_config["bf16"]["enabled"] is True

    for name, (accelerate_file, deepspeed_name) in CONFIGS.items():
        command = launch_command(name, processes=4)
        assert str(CONFIG_DIR / accelerate_file) in command and "--num_processes 4" in command
        assert (deepspeed_name is None) or str(CONFIG_DIR / deepspeed_name) in command
        assert command.startswith("accelerate launch") and "-m kimi_mini.scaleout --out" in command
    with pytest.raises(ValueError, match="prompts must be a multiple"):
        grpo_config("unused", processes=2, prompts=3)


def test_vllm_option_sets_trls_own_fields_and_omd_needs_sequence_weights(tmp_path):
    import importlib.util

    from trl import GRPOConfig

    from kimi_mini.trl import OMDTrainer

    assert vllm_settings(available=False) == {}
    if importlib.util.find_spec("vllm") is None:
        assert vllm_settings() == {}  # not installed here: TRL generates with model.generate
    args = grpo_config(tmp_path, cpu=True, **vllm_settings(available=True))
    assert isinstance(args, GRPOConfig) and args.use_vllm and args.vllm_mode == "colocate"
    assert args.vllm_gpu_memory_utilization == 0.3 and args.vllm_importance_sampling_correction
    assert args.vllm_importance_sampling_mode == "sequence_mask"
    server = grpo_config(tmp_path, cpu=True, **vllm_settings("server", available=True))
    assert server.use_vllm and server.vllm_mode == "server"
    assert (server.vllm_server_host, server.vllm_server_port) == ("0.0.0.0", 8000)  # `trl vllm-serve`'s defaults
    per_token = grpo_config(
        tmp_path, cpu=True, **{**vllm_settings(available=True), "vllm_importance_sampling_mode": "token_mask"}
    )
    with pytest.raises(ValueError, match="vllm_importance_sampling_mode"):  # before TRL would start vLLM
        OMDTrainer(model=None, reward_funcs=[countdown_reward], args=per_token)
