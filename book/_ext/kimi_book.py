"""Small fixes to the Jupyter Book 1 HTML that the browser test (tests/browser/check_book.mjs) found.

- Sphinx 7.4 with Jupyter Book 1.0.4 writes the inline configuration scripts of sphinx-thebe and
  sphinx-togglebutton twice on every page (once with filename None, once with ""); the second
  ``const THEBE_JS_URL`` is a JavaScript error. We drop duplicates from the page's script list.
- pydata-sphinx-theme's page template falls back to ``default_mode``, which nothing sets here; the
  empty mode makes the theme log an error on a reader's first visit. We set it to ``"auto"``.
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


def setup(app):
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
