"""Interactive figures that still respond in the static HTML book.

An ipywidgets slider needs a running kernel; the rendered book has none. :func:`interactive` therefore
takes one function ``traces(value) -> list of traces`` and gives either

- (default) a plotly figure with one frame per value and a control to pick one: a slider for numbers, a
  row of buttons for named choices (a metric, a difficulty). It is written as HTML with a small loader that
  fetches plotly.js from its CDN once per page and then draws: it responds in Jupyter, Colab and the static
  book alike, at any width (no fixed width, legend below the plot, no tool bar), and its output is
  deterministic, so the test suite can compare it; or
- (``live=True``) an ipywidgets slider that recomputes ``traces`` for any value in a continuous range,
  for exploring in Jupyter or Colab.

A trace is a dict in plotly's format, e.g. ``dict(type="bar", x=[...], y=[...], name="T = 1")``.

Static figures are matplotlib; :func:`use_book_style` draws them at the book's column width, with 10 pt
text, as 2x PNGs. :func:`show_source` shows a package function's code on the page.

Introduced in {ref}`ch2-temperature`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "BOOK_WIDTH",
    "use_book_style",
    "interactive",
    "slider_figure",
    "plotly_cdn",
    "simplex_xy",
    "simplex_traces",
    "draw_simplex",
    "show_source",
    "source_html",
    "clean_docstrings",
    "plot_run",
    "run_figure",
    "run_series",
]


#: Width of a full-column figure, inches: the book's text column is 688 px and figures are drawn at 100 dpi.
BOOK_WIDTH = 6.9

#: matplotlib settings of the book's figures (see :func:`use_book_style`).
BOOK_RC = {
    "figure.figsize": (BOOK_WIDTH, 3.4),
    "figure.dpi": 100,  # 1 inch = 100 CSS px on the page, so 10 pt text stays 10 pt at column width
    "savefig.dpi": 200,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 11,
    "legend.frameon": False,
}


def use_book_style() -> None:
    """Draw matplotlib figures for the book: ``BOOK_WIDTH`` inches wide at 100 dpi (the 688 px text column),
    text at 10 pt or more, and, in a notebook, PNGs at twice the resolution (sharp on HiDPI screens).

    Each chapter calls it in its imports cell; a figure then fits the column without being shrunk, so its
    text is as large on the page as the book's own."""
    import matplotlib as mpl

    mpl.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book's extras
        return
    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")


def plotly_cdn() -> str:
    """The CDN address of the plotly.js that matches the installed plotly (the browser test serves the
    copy inside the plotly package for it)."""
    from plotly.offline import get_plotlyjs_version

    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


_LOADER = """{title}{buttons}<div id="{div_id}" class="kimi-interactive" aria-label="{alt}" style="width:100%;height:{height}px;"></div>
<script type="text/javascript">
(function () {{
  var spec = {spec};
  function draw() {{
    var gd = document.getElementById("{div_id}");
    Plotly.newPlot(gd, spec.data, spec.layout, {{displayModeBar: false, responsive: true}})
      .then(function () {{ return Plotly.addFrames(gd, spec.frames); }})
      .then(function () {{
        var group = gd.parentNode.querySelector(".kimi-buttons");
        if (!group) {{ return; }}
        group.querySelectorAll("button").forEach(function (b) {{
          b.addEventListener("click", function () {{
            Plotly.animate(gd, [b.dataset.frame], {{mode: "immediate", frame: {{duration: 0, redraw: true}},
                                                     transition: {{duration: 0}}}});
            group.querySelectorAll("button").forEach(function (o) {{
              o.setAttribute("aria-pressed", o === b ? "true" : "false");
            }});
          }});
        }});
      }});
  }}
  if (window.Plotly) {{ draw(); return; }}
  var s = document.querySelector("script[data-kimi-plotly]");
  if (!s) {{
    s = document.createElement("script");
    s.src = "{cdn}";
    s.setAttribute("data-kimi-plotly", "");
    document.head.appendChild(s);
  }}
  s.addEventListener("load", draw);
}})();
</script>"""


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def slider_figure(
    traces: Callable[[object], list[dict]],
    values: Sequence,
    label: str,
    start=None,
    title: str = "",
    xaxis: dict | None = None,
    yaxis: dict | None = None,
    height: int = 380,
    frame_layout: Callable[[object], dict] | None = None,
    slider: bool = True,
):
    """A ``plotly.graph_objects.Figure`` with a frame per value of ``values`` and a slider named ``label``
    (``slider=False``: frames only, for buttons outside the figure).

    The axes are fixed across frames (set their ``range`` in ``xaxis``/``yaxis``), so moving the slider
    changes the data, not the scale; where the slider changes what is plotted (a metric), give
    ``frame_layout(value)``, a layout update (an axis range and title) applied with each frame. The figure
    has no fixed width (it fills its container, a phone's too) and its legend runs below the plot.
    """
    import plotly.graph_objects as go

    start = values[0] if start is None else start
    frames = [go.Frame(data=traces(v), name=_fmt(v), layout=frame_layout(v) if frame_layout else None) for v in values]
    fig = go.Figure(data=traces(start), frames=frames)
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
        height=height,
        autosize=True,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        xaxis=dict(automargin=True, **(xaxis or {})),
        yaxis=dict(automargin=True, **(yaxis or {})),
        legend=dict(orientation="h", x=0, xanchor="left", yref="container", y=0, yanchor="bottom"),
        font=dict(size=13),
        template="plotly_white",
    )
    if slider:
        fig.update_layout(sliders=[_slider(values, label, start)])
    if frame_layout:
        fig.update_layout(frame_layout(start))
    return fig


def _slider(values: Sequence, label: str, start) -> dict:
    """A plotly slider over the frames, one step per value, labelled with the values themselves (steps are
    evenly spaced whatever the values are, so the labels, not the positions, say how far apart they are)."""
    steps = [
        dict(
            method="animate",
            label=_fmt(v),
            args=[[_fmt(v)], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))],
        )
        for v in values
    ]
    return dict(
        active=list(values).index(start),
        currentvalue=dict(prefix=f"{label} = "),
        x=0,
        len=1,
        y=1,
        yanchor="bottom",
        pad=dict(t=0, b=40, l=10, r=10),
        steps=steps,
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def interactive(
    traces: Callable[[object], list[dict]],
    values: Sequence,
    label: str,
    *,
    live: bool = False,
    div_id: str | None = None,
    alt: str = "",
    **layout,
):
    """One figure, two forms: a kernel-free plotly figure (default) or a live ipywidgets control.

    Numbers get a slider, named choices (a metric, a difficulty) a row of buttons. ``alt`` describes the
    figure for readers who cannot see it (the page's ``aria-label``; the caption comes from the cell's
    figure metadata). ``div_id`` fixes the HTML element's id (default: derived from ``label``), which keeps
    the stored output identical from run to run. With ``live=True``, a slider over numbers spans
    ``min(values)..max(values)`` continuously, named choices are toggle buttons, and every change calls
    ``traces``.
    """
    from IPython.display import HTML

    numeric = all(_is_number(v) for v in values)
    if live:
        return _live(traces, values, label, numeric, **layout)
    import html

    import plotly.io as pio

    title = layout.pop("title", "")
    fig = slider_figure(traces, values, label, slider=numeric, **layout)
    div_id = div_id or "kimi-" + "".join(ch if ch.isalnum() else "-" for ch in label.lower())
    spec = pio.to_json(fig, validate=False).replace("</", "<\\/")  # safe inside <script>
    start = values[0] if layout.get("start") is None else layout["start"]
    buttons = ""
    if not numeric:
        buttons = "".join(
            f'<button type="button" data-frame="{html.escape(_fmt(v))}" aria-pressed="{str(v == start).lower()}">'
            f"{html.escape(_fmt(v))}</button>"
            for v in values
        )
        buttons = f'<div class="kimi-buttons" role="group" aria-label="{html.escape(label)}">{buttons}</div>\n'
    return HTML(
        _LOADER.format(
            title=f'<p class="kimi-interactive-title">{html.escape(title)}</p>\n' if title else "",
            div_id=div_id,
            alt=html.escape(alt or f"Interactive figure: {title or label}, drawn for each {label}"),
            spec=spec,
            cdn=plotly_cdn(),
            height=fig.layout.height,
            buttons=buttons,
        )
    )


def _live(traces, values, label: str, numeric: bool, **layout):
    """The ipywidgets form of :func:`interactive`: a continuous slider or toggle buttons, redrawing live."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    base = slider_figure(traces, values, label, **layout)  # FigureWidget takes no frames or sliders
    fig = go.FigureWidget(data=base.data, layout=base.layout.update(sliders=[]))

    def redraw(change):
        with fig.batch_update():
            for trace, new in zip(fig.data, traces(change["new"])):
                trace.update(new)
            if layout.get("frame_layout"):
                fig.update_layout(layout["frame_layout"](change["new"]))

    start = values[0] if layout.get("start") is None else layout["start"]
    if numeric:
        lo, hi = min(values), max(values)
        control = widgets.FloatSlider(value=start, min=lo, max=hi, step=(hi - lo) / 200, description=label)
    else:  # named choices (a metric, a run): one button each
        control = widgets.ToggleButtons(options=list(values), value=start, description=label)
    control.observe(redraw, names="value")
    return widgets.VBox([control, fig])


def simplex_xy(p) -> tuple:
    """Ternary coordinates of points on the 3-simplex: vertex 0 at (0, 0), 1 at (1, 0), 2 at the top.

    ``p`` is (3,) or (N, 3); returns ``(x, y)`` arrays.
    """
    import numpy as np

    p = np.atleast_2d(np.asarray(p, dtype=float))
    return p[:, 1] + 0.5 * p[:, 2], p[:, 2] * np.sqrt(3) / 2


def simplex_traces(labels=("arm 0", "arm 1", "arm 2")) -> list[dict]:
    """Plotly traces of the 3-simplex's triangle with its corners labelled (``<br>`` breaks a label), for
    :func:`interactive` figures on the simplex (axes hidden, ``scaleanchor`` keeping it equilateral)."""
    import numpy as np

    corners = np.eye(3)
    x, y = simplex_xy(np.vstack([corners, corners[:1]]))
    line = dict(color="gray", width=1)
    outline = dict(
        type="scatter", x=x.tolist(), y=y.tolist(), mode="lines", line=line, hoverinfo="skip", showlegend=False
    )
    cx, cy = simplex_xy(corners)
    names = dict(
        type="scatter",
        x=np.round(cx, 4).tolist(),
        y=np.round(cy, 4).tolist(),
        mode="text",
        text=list(labels),
        textposition=["bottom right", "bottom left", "middle right"],
        textfont=dict(size=13),
        cliponaxis=False,
        hoverinfo="skip",
        showlegend=False,
    )
    return [outline, names]


def draw_simplex(ax, labels=("arm 0", "arm 1", "arm 2")) -> None:
    """Draw the triangle of the 3-simplex on a matplotlib axis, with its vertices labelled."""
    import numpy as np

    corners = np.eye(3)
    x, y = simplex_xy(np.vstack([corners, corners[:1]]))
    ax.plot(x, y, color="0.3", lw=1)
    for (cx, cy), label, (dx, dy) in zip(zip(*simplex_xy(corners)), labels, [(-0.04, -0.05), (0.04, -0.05), (0, 0.04)]):
        ax.annotate(label, (cx + dx, cy + dy), ha="center", va="center")
    ax.set_xlim(-0.15, 1.15)  # room for the vertex labels, which would otherwise be clipped
    ax.set_ylim(-0.1, np.sqrt(3) / 2 + 0.08)
    ax.set_aspect("equal")
    ax.set_axis_off()


#: Functions longer than this many lines are shown folded by :func:`show_source` (click to open).
FOLD_LINES = 40

_ROLE = r":(?:func|meth|class|data|attr|mod|obj|exc):`(~?)([^`]+)`"  # :func:`x`, :data:`~a.B` and friends


def clean_docstrings(source: str) -> str:
    """Source code with its docstrings' Sphinx markup made plain for the page: ``:func:`x``` and
    double backticks become single backticks, ``{ref}`chN-label``` becomes "chapter N"."""
    import re

    source = re.sub(_ROLE, lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`", source)
    source = re.sub(r"\{ref\}`ch(\d+)-[^`]*`", lambda m: f"chapter {int(m.group(1))}", source)
    source = re.sub(r"\{ref\}`([^`]+)`", r"`\1`", source)
    return re.sub(r"``([^`]+)``", r"`\1`", source)


def source_html(obj) -> str:
    """The HTML :func:`show_source` displays: ``obj``'s source, highlighted, in a ``<details>`` block (closed,
    with its name and length) when it is longer than ``FOLD_LINES`` lines."""
    import html
    import inspect
    import textwrap

    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    source = clean_docstrings(textwrap.dedent(inspect.getsource(obj)))
    code = highlight(source, PythonLexer(), HtmlFormatter())  # <div class="highlight"><pre>...
    block = f'<div class="highlight-python notranslate kimi-source">{code}</div>'
    lines = source.count("\n")
    if lines <= FOLD_LINES:
        return block
    name = html.escape(getattr(obj, "__qualname__", getattr(obj, "__name__", "the code")))
    return f'<details class="kimi-source-fold"><summary>source of <code>{name}</code> ({lines} lines)</summary>\n{block}</details>'


def show_source(obj) -> None:
    """Display the source of a package function in a notebook, so the text shows the code that runs:
    highlighted HTML (folded when long, see :func:`source_html`), with the plain source as its text form."""
    import inspect
    import textwrap

    from IPython.display import display

    plain = clean_docstrings(textwrap.dedent(inspect.getsource(obj)))
    display({"text/html": source_html(obj), "text/plain": plain}, raw=True)


#: What ``plot_run`` draws, one panel each: (title, metric keys drawn in it). Missing keys are skipped.
RUN_PANELS = (
    ("training reward", ("reward", "accuracy")),
    ("response tokens", ("response_tokens", "eval_tokens")),
    ("held-out accuracy", ("eval_accuracy", "eval_accuracy_easy", "eval_accuracy_mid", "eval_accuracy_hard")),
    ("KL to the previous policy", ("kl_prev",)),
)


def run_series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(iterations done, values) of one metric of a run's history, rows without it skipped.

    A training metric of iteration i (reward, response tokens, KL of its update) is measured on the samples
    of pi_i, the policy after i updates; a held-out evaluation (``eval_*``) runs after iteration i's
    update, on the policy after i + 1. Plotted against "iterations done", the two line up."""
    rows = [r for r in history if r.get(key) is not None]
    shift = 1 if key.startswith("eval_") else 0
    return [r["iteration"] + shift for r in rows], [r[key] for r in rows]


def _tick_step(last: int) -> int:
    """A whole-number tick step (1, 2, 5, 10, 20, ...) giving at most about 8 ticks up to ``last``."""
    step = 1
    while last / step > 8:
        for factor in (2, 2.5, 2):  # 1 -> 2 -> 5 -> 10 -> 20 -> 50 ...
            step = int(step * factor)
            if last / step <= 8:
                break
    return step


def run_figure(history: list[dict], title: str = ""):
    """A matplotlib ``Figure`` of a run's metrics, one panel per :data:`RUN_PANELS` entry with data; the x
    axis counts iterations done, with whole-number ticks only."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) stays as it is
    from matplotlib.ticker import MaxNLocator

    panels = _run_panels(history)
    fig = Figure(figsize=(4 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(*run_series(history, key), "o-", ms=3, label=key)
        ax.set_title(name)
        ax.set_xlabel("iterations done")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no 3.5 iterations
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _run_panels(history: list[dict]) -> list[tuple[str, list[str]]]:
    if not history:
        raise ValueError("the run has no metrics yet")
    panels = [(name, [k for k in keys if run_series(history, k)[0]]) for name, keys in RUN_PANELS]
    return [(name, keys) for name, keys in panels if keys]


def plot_run(history: list[dict], path, title: str = "", plotly_js: str = "inline") -> None:
    """Draw a run's metrics (``train_rl``'s history) to ``path``: PNG with matplotlib, HTML with plotly.
    The x axis counts iterations done, with whole-number ticks.

    ``plotly_js="inline"`` embeds plotly.js in the HTML (4.8 MB; it opens without a network), ``"cdn"``
    loads it from plotly's CDN (a few kB, for sharing; it needs a network to open)."""
    from pathlib import Path

    path = Path(path)
    if path.suffix not in (".png", ".html"):
        raise ValueError(f"{path}: the figure file must end in .png or .html")
    if plotly_js not in ("inline", "cdn"):
        raise ValueError(f"plotly_js = {plotly_js!r} is invalid: it must be 'inline' or 'cdn'")
    if path.suffix == ".png":
        run_figure(history, title).savefig(path, dpi=110)
        return
    from plotly.subplots import make_subplots

    panels = _run_panels(history)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[name for name, _ in panels])
    step = _tick_step(max(row["iteration"] + 1 for row in history))
    for col, (_, keys) in enumerate(panels, start=1):
        for key in keys:
            x, y = run_series(history, key)
            fig.add_scatter(x=x, y=y, mode="lines+markers", name=key, row=1, col=col)
        fig.update_xaxes(title_text="iterations done", tick0=0, dtick=step, row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", height=380)
    path.write_text(fig.to_html(include_plotlyjs=True if plotly_js == "inline" else "cdn", full_html=True))
