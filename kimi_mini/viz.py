"""Interactive figures that still respond in the static HTML book.

An ipywidgets slider needs a running kernel; the rendered book has none. :func:`interactive` therefore
takes one function ``traces(value) -> list of traces`` and gives either

- (default) a plotly figure with one frame per value and a slider between them, written as HTML with a
  small loader that fetches plotly.js from its CDN once per page and then draws: it responds in Jupyter,
  Colab and the static book alike, and its output is deterministic, so the test suite can compare it; or
- (``live=True``) an ipywidgets slider that recomputes ``traces`` for any value in a continuous range,
  for exploring in Jupyter or Colab.

A trace is a dict in plotly's format, e.g. ``dict(type="bar", x=[...], y=[...], name="T = 1")``.

Introduced in {ref}`ch2-temperature`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "interactive",
    "slider_figure",
    "plotly_cdn",
    "simplex_xy",
    "draw_simplex",
    "show_source",
    "plot_run",
    "run_figure",
]


def plotly_cdn() -> str:
    """The CDN address of the plotly.js that matches the installed plotly (the browser test serves the
    copy inside the plotly package for it)."""
    from plotly.offline import get_plotlyjs_version

    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


_LOADER = """<div id="{div_id}" class="kimi-interactive" style="width:100%;height:{height}px;"></div>
<script type="text/javascript">
(function () {{
  var spec = {spec};
  function draw() {{
    Plotly.newPlot("{div_id}", spec.data, spec.layout, {{displaylogo: false, responsive: true}})
      .then(function () {{ return Plotly.addFrames("{div_id}", spec.frames); }});
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
):
    """A ``plotly.graph_objects.Figure`` with a frame per value of ``values`` and a slider named ``label``.

    The axes are fixed across frames (set their ``range`` in ``xaxis``/``yaxis``), so moving the slider
    changes the data, not the scale; where the slider changes what is plotted (a metric), give
    ``frame_layout(value)``, a layout update (an axis range and title) applied with each frame.
    """
    import plotly.graph_objects as go

    start = values[0] if start is None else start
    frames = [go.Frame(data=traces(v), name=_fmt(v), layout=frame_layout(v) if frame_layout else None) for v in values]
    steps = [
        dict(
            method="animate",
            label=_fmt(v),
            args=[[_fmt(v)], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))],
        )
        for v in values
    ]
    fig = go.Figure(data=traces(start), frames=frames)
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=60, r=20, t=50 if title else 20, b=90),
        xaxis=xaxis or {},
        yaxis=yaxis or {},
        sliders=[
            dict(active=list(values).index(start), currentvalue=dict(prefix=f"{label} = "), pad=dict(t=40), steps=steps)
        ],
        template="plotly_white",
    )
    if frame_layout:
        fig.update_layout(frame_layout(start))
    return fig


def interactive(
    traces: Callable[[object], list[dict]],
    values: Sequence,
    label: str,
    *,
    live: bool = False,
    div_id: str | None = None,
    **layout,
):
    """One figure, two forms: a kernel-free plotly slider (default) or a live ipywidgets slider.

    ``div_id`` fixes the HTML element's id (default: derived from ``label``), which keeps the stored
    output identical from run to run. With ``live=True``, a slider over numbers spans
    ``min(values)..max(values)`` continuously, a slider over names steps through them, and every move calls
    ``traces``.
    """
    from IPython.display import HTML

    if live:
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
        if all(isinstance(v, (int, float)) for v in values):
            lo, hi = min(values), max(values)
            slider = widgets.FloatSlider(value=start, min=lo, max=hi, step=(hi - lo) / 200, description=label)
        else:  # named choices (a metric, a run): step through them
            slider = widgets.SelectionSlider(options=list(values), value=start, description=label)
        slider.observe(redraw, names="value")
        return widgets.VBox([slider, fig])
    import plotly.io as pio

    fig = slider_figure(traces, values, label, **layout)
    div_id = div_id or "kimi-" + "".join(ch if ch.isalnum() else "-" for ch in label.lower())
    spec = pio.to_json(fig, validate=False).replace("</", "<\\/")  # safe inside <script>
    return HTML(_LOADER.format(div_id=div_id, spec=spec, cdn=plotly_cdn(), height=fig.layout.height))


def simplex_xy(p) -> tuple:
    """Ternary coordinates of points on the 3-simplex: vertex 0 at (0, 0), 1 at (1, 0), 2 at the top.

    ``p`` is (3,) or (N, 3); returns ``(x, y)`` arrays.
    """
    import numpy as np

    p = np.atleast_2d(np.asarray(p, dtype=float))
    return p[:, 1] + 0.5 * p[:, 2], p[:, 2] * np.sqrt(3) / 2


def draw_simplex(ax, labels=("arm 0", "arm 1", "arm 2")) -> None:
    """Draw the triangle of the 3-simplex on a matplotlib axis, with its vertices labelled."""
    import numpy as np

    corners = np.eye(3)
    x, y = simplex_xy(np.vstack([corners, corners[:1]]))
    ax.plot(x, y, color="0.3", lw=1)
    for (cx, cy), label, (dx, dy) in zip(zip(*simplex_xy(corners)), labels, [(-0.04, -0.05), (0.04, -0.05), (0, 0.04)]):
        ax.annotate(label, (cx + dx, cy + dy), ha="center", va="center", fontsize=9)
    ax.set_xlim(-0.15, 1.15)  # room for the vertex labels, which would otherwise be clipped
    ax.set_ylim(-0.1, np.sqrt(3) / 2 + 0.08)
    ax.set_aspect("equal")
    ax.set_axis_off()


def show_source(obj) -> None:
    """Display the source of a package function in a notebook, so the text shows the code that runs."""
    import inspect

    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))


#: What ``plot_run`` draws, one panel each: (title, metric keys drawn in it). Missing keys are skipped.
RUN_PANELS = (
    ("training reward", ("reward", "accuracy")),
    ("response tokens", ("response_tokens", "eval_tokens")),
    ("held-out accuracy", ("eval_accuracy", "eval_accuracy_easy", "eval_accuracy_mid", "eval_accuracy_hard")),
    ("KL(pi_i || pi_i+1)", ("kl_prev",)),
)


def _run_series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in history if r.get(key) is not None]
    return [r["iteration"] + 1 for r in rows], [r[key] for r in rows]


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
            ax.plot(*_run_series(history, key), "o-", ms=3, label=key)
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
    panels = [(name, [k for k in keys if _run_series(history, k)[0]]) for name, keys in RUN_PANELS]
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
            x, y = _run_series(history, key)
            fig.add_scatter(x=x, y=y, mode="lines+markers", name=key, row=1, col=col)
        fig.update_xaxes(title_text="iterations done", tick0=0, dtick=step, row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", height=380)
    path.write_text(fig.to_html(include_plotlyjs=True if plotly_js == "inline" else "cdn", full_html=True))
