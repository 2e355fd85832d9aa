"""Measurements the book quotes but does not re-run (benchmarks, superseded runs), shipped as data.

Each is a JSON file written by a script in ``benchmarks/`` or by a run the chapter describes, with the
date and machine inside. Chapters read them with :func:`load_result`, so they work from a pip install
(Colab) as well as from a clone.
"""

from __future__ import annotations

import json
from importlib.resources import files

__all__ = ["load_result"]


def load_result(name: str) -> dict:
    """The stored result ``kimi_mini/results/<name>.json``."""
    path = files(__name__) / f"{name}.json"
    if not path.is_file():
        available = sorted(p.name[:-5] for p in files(__name__).iterdir() if p.name.endswith(".json"))
        raise FileNotFoundError(f"no stored result {name!r}; available: {', '.join(available)}")
    return json.loads(path.read_text())
