"""The repository's own files agree with each other: pyproject, environment.yml, constraints, toc."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_has_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | {
        r
        for extra in ("book", "notebook", "trl")  # trl: chapter 9 runs TRL's GRPOTrainer
        for r in project["optional-dependencies"][extra]
        if "kimi-mini" not in r
    }
    env = {
        line.strip()[2:]
        for line in (ROOT / "environment.yml").read_text().splitlines()
        if line.strip().startswith("- ")
    }
    assert wanted <= env


def test_runtime_dependencies_are_ranges_and_toolchain_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("==" in r for r in project["dependencies"])  # Colab keeps its own torch
    pins = {_name(line): line for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    for tool in ("jupyter-book", "sphinx", "myst-nb", "nbval", "ruff", "torch", "transformers", "pytest"):
        assert tool in pins, f"{tool} is not pinned in constraints.txt"
    assert pins["torch"] == "torch==2.13.0"  # the CPU wheel on disk, not a CUDA build


def test_every_toc_entry_exists():
    entries = re.findall(r"file: (\S+)", (ROOT / "_toc.yml").read_text())
    entries.append(re.search(r"root: (\S+)", (ROOT / "_toc.yml").read_text()).group(1))
    for entry in entries:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make book") < readme.index("make test") < readme.index("Colab")


@pytest.mark.parametrize("chapter", sorted(p.name for p in (ROOT / "chapters").glob("*.ipynb")))
def test_markdown_has_no_control_characters(chapter):
    """A LaTeX command written into a notebook with one backslash from a Python string (``"$\tau$"``)
    arrives as a tab, a backspace (``\bar``) or a carriage return (``\rho``) and renders as garbage."""
    import json

    cells = json.loads((ROOT / "chapters" / chapter).read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            bad = sorted({repr(c) for c in text if ord(c) < 32 and c != "\n"})
            assert not bad, f"{chapter} cell {i}: control characters {bad}"


def _recorded_seconds(notebook: Path) -> float:
    """The time a chapter's cells took when it was last executed, from its stored execution metadata."""
    import json
    from datetime import datetime

    total = 0.0
    for cell in json.loads(notebook.read_text())["cells"]:
        run = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in run and "iopub.status.idle" in run:
            start, end = (
                datetime.fromisoformat(run[k].replace("Z", "+00:00"))
                for k in ("iopub.execute_input", "iopub.status.idle")
            )
            total += (end - start).total_seconds()
    return total


def _title_label(notebook: Path) -> str:
    """The label of a notebook's title, ``ch3-title`` from its first cell's ``(ch3-title)=``."""
    import json

    first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    return re.match(r"\((\S+)\)=", first).group(1)


def test_the_reading_path_states_each_chapters_run_time():
    """The landing page's CPU times agree with the chapters' last recorded execution (within 2x: load varies)."""
    rows = re.findall(
        r"^\| \{ref\}`[^`<]+ <([\w-]+-title)>` \|.*\| ([\d.]+) (s|min) \|$",
        (ROOT / "book" / "intro.md").read_text(),
        re.M,
    )
    chapters = sorted((ROOT / "chapters").glob("*.ipynb"))
    assert [label for label, _, _ in rows] == [_title_label(n) for n in chapters]  # one row each, in file order
    for (_, value, unit), notebook in zip(rows, chapters):
        stated = float(value) * (60 if unit == "min" else 1)
        recorded = _recorded_seconds(notebook)
        assert recorded > 0 and 0.5 <= stated / max(recorded, 2.5) <= 2, (notebook.name, stated, recorded)


def test_the_landing_figure_is_drawn_from_stored_results(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "hero.png"
    subprocess.run([sys.executable, str(ROOT / "book" / "figures" / "hero.py"), str(out)], check=True, timeout=120)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (ROOT / "book" / "figures" / "hero.png").exists()
