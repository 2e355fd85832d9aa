import json
import re

from kimi_mini import viz


def bars(T):
    return [dict(type="bar", x=["a", "b"], y=[T, 1 - T])]


def test_static_form_is_deterministic_and_has_a_frame_per_value():
    a = viz.interactive(bars, [0.1, 0.5, 0.9], "T", yaxis=dict(range=[0, 1])).data
    b = viz.interactive(bars, [0.1, 0.5, 0.9], "T", yaxis=dict(range=[0, 1])).data
    assert a == b  # nbval compares stored outputs
    spec = json.loads(re.search(r"var spec = (\{.*\});\n", a).group(1))
    assert [f["name"] for f in spec["frames"]] == ["0.1", "0.5", "0.9"]
    assert [f["data"][0]["y"] for f in spec["frames"]] == [[0.1, 0.9], [0.5, 0.5], [0.9, 0.09999999999999998]]
    assert [s["label"] for s in spec["layout"]["sliders"][0]["steps"]] == ["0.1", "0.5", "0.9"]
    assert spec["layout"]["yaxis"]["range"] == [0, 1]
    assert viz.plotly_cdn() in a and 'id="kimi-t"' in a


def test_start_value_sets_the_initial_frame():
    spec = json.loads(
        re.search(r"var spec = (\{.*\});\n", viz.interactive(bars, [0.1, 0.5, 0.9], "T", start=0.5).data).group(1)
    )
    assert spec["layout"]["sliders"][0]["active"] == 1
    assert spec["data"][0]["y"] == [0.5, 0.5]


def test_script_cannot_break_out_of_its_tag():
    def evil(T):
        return [dict(type="bar", x=["</script><script>alert(1)</script>"], y=[T])]

    html = viz.interactive(evil, [1, 2], "x").data
    assert html.count("</script>") == 1


def test_live_form_is_a_widget_that_redraws():
    import ipywidgets

    box = viz.interactive(bars, [0.1, 0.9], "T", live=True)
    assert isinstance(box, ipywidgets.VBox)
    slider, fig = box.children
    slider.value = 0.3
    assert list(fig.data[0].y) == [0.3, 0.7]


def test_live_form_steps_through_named_values():
    import ipywidgets

    heights = {"low": 0.25, "high": 0.75}
    box = viz.interactive(lambda name: bars(heights[name]), list(heights), "level", live=True)
    slider, fig = box.children
    assert isinstance(slider, ipywidgets.ToggleButtons) and slider.value == "low"
    slider.value = "high"
    assert list(fig.data[0].y) == [0.75, 0.25]


def test_simplex_coordinates():
    import numpy as np

    x, y = viz.simplex_xy(np.eye(3))
    assert np.allclose(x, [0, 1, 0.5]) and np.allclose(y, [0, 0, np.sqrt(3) / 2])
    x, y = viz.simplex_xy([1 / 3, 1 / 3, 1 / 3])
    assert np.allclose([x[0], y[0]], [0.5, np.sqrt(3) / 6])  # the centroid


def test_show_source_displays_highlighted_code_with_a_plain_text_form(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append((obj, raw)))
    viz.show_source(viz.simplex_xy)
    ((bundle, raw),) = shown
    assert raw and bundle["text/plain"].startswith("def simplex_xy(")
    assert bundle["text/html"].startswith(
        '<div class="highlight-python notranslate kimi-source"><div class="highlight">'
    )
    assert '<span class="k">def</span>' in bundle["text/html"] and "<details" not in bundle["text/html"]
    assert viz.source_html(viz.simplex_xy) == viz.source_html(viz.simplex_xy)  # nbval compares it


def test_show_source_folds_long_functions_under_their_name_and_length():
    long = viz.source_html(viz.interactive)  # more than FOLD_LINES lines
    lines = len(__import__("inspect").getsource(viz.interactive).splitlines())
    assert lines > viz.FOLD_LINES
    assert long.startswith(
        f'<details class="kimi-source-fold"><summary>source of <code>interactive</code> ({lines} lines)'
    )
    assert long.endswith("</div></details>")


def test_docstring_markup_becomes_plain_backticks():
    text = "See :func:`kimi_mini.losses.omd_loss`, :data:`~kimi_mini.viz.RUN_PANELS`, ``x + 1`` and {ref}`ch3-closed-form`."
    assert viz.clean_docstrings(text) == "See `kimi_mini.losses.omd_loss`, `RUN_PANELS`, `x + 1` and chapter 3."
    assert viz.clean_docstrings("{ref}`notation`") == "`notation`"


def _spec(html: str) -> dict:
    return json.loads(re.search(r"var spec = (\{.*\});\n", html).group(1))


def test_figures_fit_a_phone_legend_below_no_toolbar_and_a_title_that_wraps():
    html = viz.interactive(bars, [0.1, 0.9], "T", title="A title", alt="Two bars whose heights the slider sets").data
    layout = _spec(html)["layout"]
    assert "width" not in layout and layout["autosize"] is True
    assert layout["legend"]["orientation"] == "h" and layout["legend"]["y"] == 0  # at the bottom of the figure
    assert "title" not in layout or not layout["title"].get("text")  # the title is HTML, above the plot
    assert '<p class="kimi-interactive-title">A title</p>' in html
    assert "displayModeBar: false" in html and "responsive: true" in html
    assert 'aria-label="Two bars whose heights the slider sets"' in html


def test_named_choices_get_buttons_and_numbers_a_slider():
    named = viz.interactive(
        lambda name: bars({"low": 0.25, "high": 0.75}[name]), ["low", "high"], "level", start="high"
    ).data
    spec = _spec(named)
    assert "sliders" not in spec["layout"] and [f["name"] for f in spec["frames"]] == ["low", "high"]
    buttons = re.findall(r'<button type="button" data-frame="([^"]+)" aria-pressed="(true|false)">', named)
    assert buttons == [("low", "false"), ("high", "true")]
    assert 'class="kimi-buttons" role="group" aria-label="level"' in named
    numeric = viz.interactive(bars, [0.1, 0.9], "T").data
    assert 'class="kimi-buttons"' not in numeric and len(_spec(numeric)["layout"]["sliders"]) == 1


def test_simplex_traces_label_the_corners():
    outline, names = viz.simplex_traces(("a<br>r = 0.3", "b", "c"))
    assert outline["mode"] == "lines" and len(outline["x"]) == 4
    assert names["mode"] == "text" and names["text"] == ["a<br>r = 0.3", "b", "c"] and names["cliponaxis"] is False


def test_book_style_draws_at_column_width_with_10_pt_text():
    import matplotlib as mpl

    with mpl.rc_context():
        viz.use_book_style()
        assert mpl.rcParams["figure.figsize"] == [viz.BOOK_WIDTH, 3.4] and mpl.rcParams["figure.dpi"] == 100
        sizes = [mpl.rcParams[k] for k in ("font.size", "xtick.labelsize", "ytick.labelsize", "legend.fontsize")]
        assert all(float(s) >= 10 for s in sizes)
    assert viz.BOOK_WIDTH * 100 <= 690  # the 688 px text column, to within a pixel or two


def test_frame_layout_goes_with_each_frame_and_the_live_slider():
    def layout_of(T):
        return dict(yaxis=dict(range=[0, T], title=dict(text=f"up to {T}")))

    fig = viz.slider_figure(bars, [0.5, 2.0], "T", start=2.0, frame_layout=layout_of)
    assert [tuple(f.layout.yaxis.range) for f in fig.frames] == [(0, 0.5), (0, 2.0)]
    assert tuple(fig.layout.yaxis.range) == (0, 2.0)
    slider, live = viz.interactive(bars, [0.5, 2.0], "T", live=True, frame_layout=layout_of).children
    slider.value = 1.0
    assert tuple(live.layout.yaxis.range) == (0, 1.0)


def _history(iterations: int, eval_every: int) -> list[dict]:
    rows = [dict(iteration=i, reward=0.4 + 0.01 * i, kl_prev=0.01) for i in range(iterations)]
    for row in rows[eval_every - 1 :: eval_every]:
        row["eval_accuracy"] = 0.5
    return rows


def test_run_plots_tick_whole_iterations_only(tmp_path):
    from kimi_mini.viz import run_figure

    for iterations, eval_every in ((4, 2), (3, 1), (24, 4), (200, 10)):
        fig = run_figure(_history(iterations, eval_every))
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), (iterations, ax.get_title(), ticks)


def test_run_html_is_self_contained_or_loads_plotly_from_its_cdn(tmp_path):
    import pytest

    from kimi_mini.viz import plot_run

    history = _history(4, 2)
    plot_run(history, tmp_path / "inline.html")
    plot_run(history, tmp_path / "cdn.html", plotly_js="cdn")
    inline, cdn = (tmp_path / "inline.html").read_text(), (tmp_path / "cdn.html").read_text()
    assert len(inline) > 3_000_000 and len(cdn) < 100_000 and "https://cdn.plot.ly/plotly-" in cdn
    axes = re.findall(r'"xaxis\d*":\{"anchor".*?"yaxis', cdn)  # the panels' x axes, not the template's
    assert len(axes) == 3 and all('"dtick":1' in axis for axis in axes)  # a tick every whole iteration
    with pytest.raises(ValueError, match="plotly_js"):
        plot_run(history, tmp_path / "x.html", plotly_js="none")


def test_run_series_puts_training_and_held_out_metrics_on_iterations_done():
    from kimi_mini.viz import run_series

    history = [
        dict(iteration=0, reward=0.5),
        dict(iteration=1, reward=0.6, eval_accuracy=0.7),
        dict(iteration=2, reward=None),
    ]
    # the reward of iteration i was measured on pi_i (i updates done); the evaluation after it on pi_{i+1}
    assert run_series(history, "reward") == ([0, 1], [0.5, 0.6])
    assert run_series(history, "eval_accuracy") == ([2], [0.7])
    assert run_series(history, "kl_prev") == ([], [])
