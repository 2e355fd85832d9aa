import random

import torch

from kimi_mini.device import default_threads, get_device, seed_everything, set_threads, versions


def test_get_device_here_is_cpu_unless_accelerated():
    device = get_device()
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
    assert get_device("cpu").type == "cpu"


def test_seed_everything_reproduces():
    seed_everything(3)
    a = (random.random(), torch.rand(3))
    g = seed_everything(3)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=seed_everything(3)))


def test_thread_policy(monkeypatch):
    monkeypatch.delenv("KIMI_MINI_THREADS", raising=False)
    assert default_threads(2) == 1
    assert default_threads(16) == 8
    monkeypatch.setenv("KIMI_MINI_THREADS", "3")
    assert default_threads(2) == 3
    before = torch.get_num_threads()
    try:
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_versions_lists_what_matters():
    assert {"torch", "transformers", "kimi_mini", "device"} <= set(versions())
