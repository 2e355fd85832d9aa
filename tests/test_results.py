from pathlib import Path

import pytest

from kimi_mini.results import load_result


def test_stored_results_load_and_say_when_and_where():
    bench = load_result("rollout-cpu")
    assert {"generate", "generate_static", "sampler", "forward_floor", "measured"} <= set(bench)
    assert bench["sampler"]["tokens"] == bench["generate"]["tokens"]  # the same samples, timed both ways


def test_missing_result_lists_what_exists():
    with pytest.raises(FileNotFoundError, match="rollout-cpu"):
        load_result("no-such-result")


def test_superseded_warmup_run_is_described():
    run = load_result("warmup-per-batch-mean")
    assert "per batch" in run["what"] and {"sampled", "greedy"} <= set(run)


def _histories(value):
    """Every list of per-iteration rows with held-out accuracy in a stored result."""
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        if any("eval_accuracy" in r and "iteration" in r for r in value):
            yield value
            return
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        yield from _histories(child)


def test_no_stored_run_would_have_stopped_as_collapsed():
    """The collapse stop (RLConfig.collapse_accuracy) at its default leaves every stored run as it was."""
    import kimi_mini.results as results
    from kimi_mini.config import RLConfig
    from kimi_mini.train import collapse_reason

    cfg = RLConfig(eval_problems=512)  # judged as strictly as possible
    paths = sorted(Path(results.__file__).parent.glob("*.json"))
    histories = [h for path in paths for h in _histories(load_result(path.stem))]
    assert len(histories) > 40
    for history in histories:
        assert not any(collapse_reason(history[: i + 1], cfg) for i in range(len(history)))
