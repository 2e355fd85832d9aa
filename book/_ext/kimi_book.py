"""Small fixes to the Jupyter Book 1 HTML that the browser test (tests/browser/check_book.mjs) found.

- Sphinx 7.4 with Jupyter Book 1.0.4 writes the inline configuration scripts of sphinx-thebe and
  sphinx-togglebutton twice on every page (once with filename None, once with ""); the second
  ``const THEBE_JS_URL`` is a JavaScript error. We drop duplicates from the page's script list.
- pydata-sphinx-theme's page template falls back to ``default_mode``, which nothing sets here; the
  empty mode makes the theme log an error on a reader's first visit. We set it to ``"auto"``.
- The text cites author-year (``bibtex_reference_style: author_year``) but pybtex's styles label the
  bibliography ``[SWZ+24]`` (alpha) or ``[3]``: the ``kimi`` style labels it ``[Shao et al., 2024]``.
"""

from __future__ import annotations


def _script_key(script) -> str:
    # Sphinx registers one copy with filename None and one with "", so its own check sees two scripts.
    return repr((getattr(script, "filename", script) or "", sorted(getattr(script, "attributes", {}).items())))


def _fix_page(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts is not None:
        seen, unique = set(), []
        for script in scripts:
            if _script_key(script) not in seen:
                seen.add(_script_key(script))
                unique.append(script)
        scripts[:] = unique
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _author_year_style():
    """pybtex's unsrt formatting with author-year labels, sorted by author and year."""
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle

    def surname(person) -> str:  # "von Werra"; an organisation written {Kimi Team} loses its braces
        return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            seen: dict[str, int] = {}
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [surname(p) for p in people if surname(p) != "others"]
                if not names:
                    who = entry.fields.get("organization", entry.key)
                elif len(names) == 1 and len(people) == 1:
                    who = names[0]
                elif len(names) == 2 and len(people) == 2:
                    who = f"{names[0]} and {names[1]}"
                else:
                    who = f"{names[0]} et al."
                label = f"{who}, {entry.fields.get('year', 'n.d.')}"
                seen[label] = seen.get(label, 0) + 1
                yield label if seen[label] == 1 else f"{label}{chr(ord('a') + seen[label] - 1)}"

    class AuthorYearStyle(UnsrtStyle):
        default_label_style = AuthorYearLabels
        default_sorting_style = "author_year_title"

    return AuthorYearStyle


def setup(app):
    from pybtex.plugin import register_plugin

    register_plugin("pybtex.style.formatting", "kimi", _author_year_style())
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
