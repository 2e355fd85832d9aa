"""Device choice, seeding and the CPU thread policy.

Introduced in {ref}`ch1-device`.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

__all__ = ["get_device", "seed_everything", "set_threads", "default_threads", "available_memory", "versions"]


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU. ``prefer`` forces one (e.g. ``"cpu"``)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` with the same seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_threads(cpu_count: int | None = None) -> int:
    """How many intra-op threads torch should use on the CPU.

    Measured on a 2-core machine (chapter 1): alone, two threads trained the tiny policy 1.75x faster
    than one; with another process busy on the other core, two threads were 1.4-1.7x *slower*. Tests,
    notebooks beside a browser and parallel jobs are the second case, so machines with up to four cores
    get one thread; bigger ones get half their cores. ``KIMI_MINI_THREADS`` overrides.
    """
    if "KIMI_MINI_THREADS" in os.environ:
        return max(1, int(os.environ["KIMI_MINI_THREADS"]))
    cpu_count = cpu_count or os.cpu_count() or 1
    return 1 if cpu_count <= 4 else cpu_count // 2


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: :func:`default_threads`) and return it."""
    n = default_threads() if n is None else n
    torch.set_num_threads(n)
    return n


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes free for new tensors on ``device``: on CUDA what the driver reports free plus what torch's
    allocator holds unused; on the CPU the kernel's ``MemAvailable`` (``/proc/meminfo``), else the free
    physical pages; None where it cannot be told (Apple's MPS, systems without either)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def versions() -> dict[str, str]:
    """Versions that matter for bug reports, and the device in use."""
    import transformers

    from . import __version__

    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "kimi_mini": __version__,
        "device": str(get_device()),
        "threads": str(torch.get_num_threads()),
    }
