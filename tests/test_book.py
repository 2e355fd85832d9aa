"""The book builds with warnings as errors, and the rendered chapter has what readers need."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).with_name("jupyter-book")


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    if not JB.exists():
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [str(JB), "build", str(ROOT), "--path-output", str(out), "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield out / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)


def test_front_matter_pages_exist(html):
    for page in ("book/intro", "book/using-this-book", "book/notation", "book/package-map", "book/references"):
        assert (html / f"{page}.html").exists(), page
    assert "2501.12599" in (html / "book" / "references.html").read_text()


def test_chapter_one_has_figures_exercises_and_collapsed_solutions(html):
    page = (html / "chapters" / "01_task_and_warmup.html").read_text()
    assert len(re.findall(r"<img [^>]*src=\"[^\"]+\.png\"", page)) >= 4  # the stored figures
    assert page.count('class="admonition exercise') >= 4
    solutions = re.findall(r'<div class="([^"]*solution[^"]*)"', page)
    assert len(solutions) >= 4 and all("dropdown" in c for c in solutions)
    assert "{exercise}" not in page and "{solution" not in page  # directives were rendered, not printed
    assert "colab.research.google.com/github/kimi-mini/kimi-mini/blob/main/chapters/01_task_and_warmup.ipynb" in page
