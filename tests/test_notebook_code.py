"""The chapters' code reads well on the page: no formatter-wrapped comment lines, no private imports."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))

# A line that starts with a closing bracket and carries a comment: ruff wrapped a long line that had a
# trailing comment (`x.sum(\n    -1\n)  # (B,)`). Put such a comment on its own line above the statement.
WRAPPED_COMMENT = re.compile(r"^\s*[\)\]\}][\)\]\},.\w\[\]]*\s+#")


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_comment_left_on_a_wrapped_closing_bracket(path):
    wrapped = [line for src in _code_cells(path) for line in src.splitlines() if WRAPPED_COMMENT.match(line)]
    assert not wrapped, wrapped[:5]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_import_only_public_names(path):
    imported = []
    for src in _code_cells(path):
        code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kimi_mini"):
                imported += [alias.name for alias in node.names]
    assert imported and not [name for name in imported if name.startswith("_")]


def test_the_wrap_pattern_catches_what_ruff_writes():
    assert WRAPPED_COMMENT.match(")  # (B,): log pi_theta(y|x) - log pi_i(y|x)")
    assert WRAPPED_COMMENT.match("    ]  # + 0.0: no '-0.000'")
    assert not WRAPPED_COMMENT.match("x = f(y)  # a comment")
    assert not WRAPPED_COMMENT.match(")")
