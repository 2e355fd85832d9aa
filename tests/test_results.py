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
