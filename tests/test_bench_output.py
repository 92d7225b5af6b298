"""The benchmark's last line is one JSON object with exactly the keys the project fixed: the
first benchmark's eight, `device`, and the five that iteration-level batching added. The
figures that explain them come on the line before, after "details"."""

from __future__ import annotations

import ast
import inspect
import json

from bench import run
from bench.run import last_lines

FIXED = {
    "caption_speedup", "index_speedup", "find_p95_ms_10k", "find_p95_ms_100k",
    "loop_lag_p99_ms", "loop_lag_max_ms", "service_peak_rss_mb", "batch_mean", "device",
    "caption_lone_speedup", "caption_staggered_speedup", "caption_staggered_p95_s", "dtype",
    "threads",
}  # fmt: skip
EXPLAINING = {"caption_first_burst_s", "index_model_busy", "siglip_index_ms_per_image"}


def test_the_last_line_holds_exactly_the_fixed_keys_and_details_the_rest() -> None:
    figures: dict[str, object] = {key: 1.5 for key in sorted(FIXED | EXPLAINING)}
    figures["device"], figures["dtype"], figures["threads"] = "cpu", "float32", 2
    details, last = last_lines(figures)
    assert json.loads(last) == {key: figures[key] for key in FIXED}
    label, _, rest = details.partition(" ")
    assert label == "details" and set(json.loads(rest)) == EXPLAINING


def test_the_measured_figures_hold_every_fixed_key() -> None:
    """`report` builds the figures as one dict literal: a fixed key it lost would only show as
    a KeyError at the end of a run of several minutes."""
    tree = ast.parse(inspect.getsource(run.report))
    (figures,) = [node for node in ast.walk(tree) if isinstance(node, ast.Return)]
    assert isinstance(figures.value, ast.Dict)
    keys = {key.value for key in figures.value.keys if isinstance(key, ast.Constant)}
    assert keys >= FIXED
