"""The book builds with warnings as errors, and readers get what they need in a real browser."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JB = Path(sys.executable).with_name("jupyter-book")
COLAB = "https://colab.research.google.com/github/kimi-mini/kimi-mini/blob/main/"


@pytest.fixture(scope="module")
def html():
    """Build the whole book from scratch (``--all``: warnings of unchanged pages are not hidden)."""
    if not JB.exists():
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    result = subprocess.run(
        [str(JB), "build", str(ROOT), "--all", "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return ROOT / "_build" / "html"


def test_front_matter_pages_exist(html):
    for page in ("book/intro", "book/using-this-book", "book/notation", "book/package-map", "book/references"):
        assert (html / f"{page}.html").exists(), page
    assert "2501.12599" in (html / "book" / "references.html").read_text()


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb")))
def test_chapters_have_figures_exercises_and_collapsed_solutions(html, chapter):
    page = (html / "chapters" / f"{chapter}.html").read_text()
    assert len(re.findall(r"<img [^>]*src=\"[^\"]+\.png\"", page)) >= 2  # the stored figures
    assert len(re.findall(r'class="[^"]*\bexercise\b[^"]*"', page)) >= 3
    solutions = re.findall(r'<div class="([^"]*solution[^"]*)"', page)
    assert len(solutions) >= 3 and all("dropdown" in c for c in solutions)
    assert "{exercise}" not in page and "{solution" not in page  # directives were rendered, not printed
    assert f"{COLAB}chapters/{chapter}.ipynb" in page


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb")))
def test_stored_figures_are_numbered_captioned_and_have_alt_text(html, chapter):
    """Every stored PNG figure sits in a <figure> with a <figcaption> and has real alt text."""
    page = (html / "chapters" / f"{chapter}.html").read_text()
    images = list(re.finditer(r"<img [^>]*src=\"[^\"]*_images/[^\"]+\.png\"[^>]*>", page))
    assert len(images) >= 2
    for img in images:
        start = page.rfind("<figure", 0, img.start())
        end = page.find("</figure>", img.end())
        assert start != -1 and end != -1 and page.rfind("</figure>", 0, img.start()) < start, img.group(0)
        assert re.search(r"<figcaption\b", page[img.end() : end]), img.group(0)
        assert re.search(r'<span class="caption-number">Fig\. [\d.]+ </span>', page[img.end() : end]), img.group(0)
        alt = re.search(r'\balt="([^"]*)"', img.group(0))
        src = re.search(r'src="([^"]+)"', img.group(0)).group(1)
        assert alt and len(alt.group(1)) > 20, img.group(0)
        assert Path(src).stem not in alt.group(1) and not re.fullmatch(r"[0-9a-f]{16,}\S*", alt.group(1)), img.group(0)


def _browser_tools() -> str | None:
    """What is missing to run the browser test, or None."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not shutil.which("node"):
        return "node is not installed"
    if not Path(chromium).exists():
        return f"no Chromium at {chromium} (Debian: apt-get install chromium; or set CHROMIUM)"
    if not (ROOT / "node_modules" / "playwright-core").exists():
        return "node_modules is missing: run `npm ci`"
    return None


def test_pages_in_a_real_browser(html):
    missing = _browser_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    shots = ROOT / "_build" / "screenshots"
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "browser" / "check_book.mjs"), str(html), str(shots), COLAB, str(plotly_js)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout)
    problems = {page["page"]: page["problems"] for page in report["report"] if page["problems"]}
    assert not problems, json.dumps(problems, indent=1)
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {page["page"]: page for page in report["report"]}
    assert pages["book/notation.html"]["math"] > 10  # formulas rendered by MathJax
    assert sum(page["figures"] for page in pages.values()) >= 1  # interactive figures moved
    assert all(pages[p]["solutions"] >= 3 for p in pages if p.startswith("chapters/"))
    # no display equation wider than its column, at 1280x900 and at phone width (390x844)
    assert all(page["wideEquations"] == 0 and page["wideEquationsPhone"] == 0 for page in pages.values())
    assert len(list(shots.glob("*.png"))) == report["pages"]


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb")))
def test_checks_render_collapsed_and_no_test_markers_show(html, chapter):
    """Every check cell of the notebook is a closed <details> under its label; nbval's tags stay invisible."""
    cells = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text())["cells"]
    label = "Checks for the claims above"
    checks = sum(c.get("metadata", {}).get("mystnb", {}).get("code_prompt_show") == label for c in cells)
    page = (html / "chapters" / f"{chapter}.html").read_text()
    collapsed = re.findall(
        r'<details class="[^"]*\bhide above-input\b[^"]*">\s*<summary[^>]*>\s*<p class="collapsed[^"]*">([^<]*)</p>',
        page,
    )
    assert checks >= 3 and collapsed.count(label) == checks
    visible = re.sub(r'class="[^"]*"', "", page)  # tags become CSS classes (tag_nbval-...), which no one reads
    assert "NBVAL" not in visible and "nbval" not in visible


def test_the_bibliography_is_labelled_author_year_like_the_citations(html):
    page = (html / "book" / "references.html").read_text()
    labels = re.findall(r'role="doc-biblioentry">\s*<span class="label">(.*?)</span></span>', page, re.S)
    labels = [re.sub(r"<[^>]+>", "", label).strip("[] ") for label in labels]
    assert len(labels) >= 10
    assert all(re.fullmatch(r"[^\d\[\]{}]+, (19|20)\d\d[a-z]?", label) for label in labels), labels
    assert "Kimi Team, 2025" in labels and "von Werra et al., 2020" in labels
