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
    assert isinstance(slider, ipywidgets.SelectionSlider) and slider.value == "low"
    slider.value = "high"
    assert list(fig.data[0].y) == [0.75, 0.25]


def test_simplex_coordinates():
    import numpy as np

    x, y = viz.simplex_xy(np.eye(3))
    assert np.allclose(x, [0, 1, 0.5]) and np.allclose(y, [0, 0, np.sqrt(3) / 2])
    x, y = viz.simplex_xy([1 / 3, 1 / 3, 1 / 3])
    assert np.allclose([x[0], y[0]], [0.5, np.sqrt(3) / 6])  # the centroid


def test_show_source_displays_the_function(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    viz.show_source(viz.simplex_xy)
    assert shown[0].startswith("```python\ndef simplex_xy(") and shown[0].endswith("```")


def test_frame_layout_goes_with_each_frame_and_the_live_slider():
    def layout_of(T):
        return dict(yaxis=dict(range=[0, T], title=dict(text=f"up to {T}")))

    fig = viz.slider_figure(bars, [0.5, 2.0], "T", start=2.0, frame_layout=layout_of)
    assert [tuple(f.layout.yaxis.range) for f in fig.frames] == [(0, 0.5), (0, 2.0)]
    assert tuple(fig.layout.yaxis.range) == (0, 2.0)
    slider, live = viz.interactive(bars, [0.5, 2.0], "T", live=True, frame_layout=layout_of).children
    slider.value = 1.0
    assert tuple(live.layout.yaxis.range) == (0, 1.0)
