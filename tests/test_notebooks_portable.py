"""The chapters' stored outputs are checked by nbval on any x86-64 CPU: what readers see carries no test
markers, checks render collapsed, and no unchecked output prints more digits than float32 can repeat.
``make test-notebooks`` runs every chapter with this CPU's kernels and with ``ATEN_CPU_CAPABILITY=default``."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.name for p in (ROOT / "chapters").glob("*.ipynb"))
CHECK_LABEL = "Checks for the claims above"
# A float printed with 9 or more decimals: float32 (and a reduction in another order) repeats about 7
# significant digits, so such a number differs on another CPU.
LONG_FLOAT = re.compile(r"\d\.\d{9,}")


def _code_cells(chapter):
    cells = json.loads((ROOT / "chapters" / chapter).read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            yield i, cell, "".join(cell["source"]), cell.get("metadata", {}).get("tags", [])


def _only_checks(node) -> bool:
    """An ``assert``, or a loop or branch whose body holds nothing but checks and assignments."""
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, (ast.For, ast.If, ast.With)):
        body = [*node.body, *getattr(node, "orelse", [])]
        return any(_only_checks(n) for n in body) and all(
            _only_checks(n) or isinstance(n, (ast.Assign, ast.AugAssign)) for n in body
        )
    return False


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_test_markers_in_code_readers_see(chapter):
    for i, _, source, _ in _code_cells(chapter):
        assert "NBVAL" not in source, f"{chapter} cell {i}: use nbval's cell tags, not a comment"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_check_cells_render_collapsed_with_a_label(chapter):
    checks = 0
    for i, cell, source, tags in _code_cells(chapter):
        body = ast.parse(source).body
        if body and all(_only_checks(node) for node in body):
            checks += 1
            assert "hide-input" in tags, f"{chapter} cell {i}: a check cell renders collapsed (hide-input)"
            assert cell["metadata"].get("mystnb", {}).get("code_prompt_show") == CHECK_LABEL, f"{chapter} cell {i}"
            assert not cell["outputs"] or all(o["output_type"] == "stream" for o in cell["outputs"])
        elif "mystnb" in cell.get("metadata", {}):
            assert cell["metadata"]["mystnb"].get("code_prompt_show") != CHECK_LABEL, (
                f"{chapter} cell {i} is labelled as checks but does more than check"
            )
    assert checks >= 3, f"{chapter}: its claims have no check cells"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_checked_outputs_print_no_more_digits_than_float32_repeats(chapter):
    for i, cell, _, tags in _code_cells(chapter):
        if "nbval-ignore-output" in tags or "nbval-skip" in tags:
            continue
        for output in cell["outputs"]:
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            assert not LONG_FLOAT.search(text), f"{chapter} cell {i} prints {LONG_FLOAT.search(text)[0]}"


def test_make_test_runs_the_chapters_with_the_default_kernels_too():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("test-notebooks: setup") :]
    assert "ATEN_CPU_CAPABILITY=default $(NBVAL)" in recipe and "\t$(NBVAL);" in recipe
