"""The landing page's figure: the whole recipe from random weights on two CPU cores, from stored results.

    python book/figures/hero.py [OUT.png]   # writes book/figures/hero.png (about 1 second)

Reads ``kimi_mini/results/recipe-cpu.json`` (written by ``benchmarks/recipe.py``, chapter 9): left, each
stage's held-out accuracy by difficulty; right, the RL stage's held-out accuracy and response length.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a clone without installing
from kimi_mini.results import load_result  # noqa: E402

STAGES = {"warmup": "warm-up\nSFT", "rl": "+ RL\n(OMD)", "long2short": "+ long2short\n(SFT)"}
PENALTY_FROM = 16  # RECIPE_RL: the length penalty (w = 1) starts after 16 iterations
LEVELS = {"easy": "#55A868", "mid": "#4C72B0", "hard": "#C44E52"}


def draw(path: Path) -> None:
    recipe = load_result("recipe-cpu")
    stages = {row["stage"]: row for row in recipe["stages"]}
    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.9, 2.7), width_ratios=[1.1, 1])
    width = 0.26
    for j, (level, color) in enumerate(LEVELS.items()):
        xs = [i + (j - 1) * width for i in range(len(STAGES))]
        left.bar(xs, [stages[s][f"eval_accuracy_{level}"] for s in STAGES], width, color=color, label=level)
    left.set_xticks(range(len(STAGES)), list(STAGES.values()))
    left.set_ylim(0, 1.18)
    left.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    left.set_ylabel("held-out accuracy")
    left.legend(frameon=False, ncols=3, loc="upper center", fontsize=9, handlelength=1, columnspacing=1)
    left.set_title("The recipe, stage by stage", fontsize=10)

    evals = [row for row in recipe["rl_history"] if "eval_accuracy" in row]
    its = [row["iteration"] + 1 for row in evals]
    right.plot(its, [row["eval_accuracy"] for row in evals], "o-", color="#333333", label="accuracy")
    right.set_ylim(0.4, 1)
    right.set_xlabel("RL iteration")
    right.set_ylabel("held-out accuracy")
    twin = right.twinx()
    twin.plot(its, [row["response_tokens"] for row in evals], "s--", color="#DD8452", label="tokens")
    twin.set_ylabel("tokens per sampled response", color="#DD8452")
    twin.axvline(PENALTY_FROM + 0.5, color="#DD8452", lw=1, ls=":")
    twin.text(PENALTY_FROM + 1, twin.get_ylim()[0] + 2, "length\npenalty\non", va="bottom", fontsize=9, color="#DD8452")
    twin.spines.top.set_visible(False)
    right.axhline(stages["warmup"]["eval_accuracy"], color="#999999", lw=1, ls=":")
    right.text(its[0], stages["warmup"]["eval_accuracy"] + 0.02, "warm-up", fontsize=9, color="#777777")
    right.set_title("One RL run: accuracy and response length", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=200)  # 1380 px wide: sharp at the 690 px column on HiDPI screens
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("hero.png"))
