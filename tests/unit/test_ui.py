"""ui/: what the dashboard's pages compute from store records (rows, traces, plots), without a server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from llmcorr.cli.ui import is_loopback
from llmcorr.report.charts import _ticks, metric_bars, requests_over_time
from llmcorr.runs.spec import KindOptions, RunSpec
from llmcorr.runs.summary import cost as run_cost
from llmcorr.store import RowRecord, RunRecord
from llmcorr.view import request_times, row_views, trace_tree

MS = 1_000_000
SVG = "{http://www.w3.org/2000/svg}"


def span(span_id: str, parent: str | None, kind: str, start_ms: int, end_ms: int, **attrs: Any) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent_id": parent,
        "kind": kind,
        "name": f"{kind} {span_id}",
        "start_ns": 5_000 * MS + start_ms * MS,
        "end_ns": 5_000 * MS + end_ms * MS,
        "status": "ok",
        "error": None,
        "attributes": attrs,
    }


def test_trace_tree_nests_spans_and_places_them_on_the_rows_timeline() -> None:
    messages = [{"role": "user", "content": "Define acid."}]
    spans = [
        span("c2", "r", "llm", 60, 90, **{"gen_ai.output.messages": json.dumps([{"content": "second"}])}),
        span("r", "the-run-span", "row", 0, 100),
        span("s", "r", "step", 10, 60, **{"llmcorr.step": "lookup", "llmcorr.input": '{"q": 1}'}),
        span(
            "c1",
            "s",
            "llm",
            20,
            50,
            **{
                "gen_ai.input.messages": json.dumps(messages),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "A proton donor."}]),
                "gen_ai.usage.input_tokens": 12,
                "llmcorr.cache_hit": True,
                "llmcorr.endpoint": "east",
            },
        ),
    ]
    tree = trace_tree(spans)
    assert [(v.span_id, v.depth) for v in tree] == [("r", 0), ("s", 1), ("c1", 2), ("c2", 1)]
    call = tree[2]
    assert (call.left_pct, call.width_pct, call.offset_ms, call.duration_ms) == (20.0, 30.0, 20.0, 30.0)
    assert call.llm is not None and call.llm.messages == messages and call.llm.response == "A proton donor."
    assert call.llm.cache_hit and call.llm.endpoint == "east" and call.llm.input_tokens == 12
    assert tree[1].step_input == '{"q": 1}' and tree[1].llm is None
    assert request_times(spans) == [0.0]  # the cache hit sent nothing
    assert trace_tree([]) == []


def record(kind: str = "correct", **fields: Any) -> RunRecord:
    base: dict[str, Any] = {
        "id": "abc",
        "name": None,
        "kind": kind,
        "status": "completed",
        "spec": {"options": {"problem": "classification"}},
        "created_utc": "2026-01-01T00:00:00.000+00:00",
        "finished_utc": "2026-01-01T00:00:02.500+00:00",
        "rows_total": 3,
        "rows_done": 3,
        "rows_failed": 0,
        "input_tokens": 1000,
        "output_tokens": 100,
        "metrics": None,
        "error": None,
    }
    return RunRecord(**(base | fields))


def row(index: int, prediction: float, corrected: int | None, status: str = "ok") -> RowRecord:
    output = {"corrected_prediction": float(corrected), "corrected_label": corrected} if corrected is not None else None
    inputs = {"input": f"x{index}", "prediction": prediction}
    return RowRecord(index, None, inputs, status, output=output, input_tokens=10, output_tokens=2)


def test_rows_of_a_correct_run_say_which_predictions_changed_and_filter() -> None:
    rows = [row(0, 0.2, 1), row(1, 0.9, 1), row(2, 0.4, None, status="unparsed")]
    views = row_views(record(), rows)
    assert [(v.n, v.changed, v.tokens) for v in views] == [(1, True, 12), (2, False, 12), (3, None, 12)]
    assert views[0].output == "0 (p=0.2) → 1"
    assert [v.n for v in row_views(record(), rows, "changed")] == [1]
    assert [v.n for v in row_views(record(), rows, "errors")] == [3]


def test_a_test_row_not_sent_shows_its_base_prediction_kept_and_is_no_error() -> None:
    unsent = RowRecord(3, None, {"input": "x3", "prediction": 0.97, "split": "test"}, "not sent (gate)",
                       output={"not_sent": "gate"})  # fmt: skip
    rows = [row(0, 0.2, 1), unsent]
    views = row_views(record(), rows)
    assert (views[1].status, views[1].output, views[1].changed) == (
        "not sent (gate)",
        "1 (p=0.97) kept: not sent (gate)",
        False,
    )
    assert row_views(record(), rows, "errors") == [] and [v.n for v in row_views(record(), rows, "unsent")] == [4]


def test_cost_is_the_endpoints_count_once_finished_else_tokens_at_the_one_endpoints_prices() -> None:
    configs = [{"name": "e", "price_in": 2.0, "price_out": 10.0}]
    priced = RunSpec(
        kind="prompt",
        data="d.csv",
        data_sha256="-",
        template="p.prompty",
        template_sha256="-",
        endpoints=[{"name": "e"}],
        params={"max_tokens": 8},
        options=KindOptions(endpoint_configs=configs),
    ).to_dict()
    assert run_cost(record(spec=priced)) == pytest.approx((1000 * 2 + 100 * 10) / 1e6)
    assert run_cost(record(spec=priced, usage={"e": {"cost": 0.5}, "f": {"cost": 0.25}})) == 0.75
    assert run_cost(record()) is None


def test_charts_are_svg_with_their_data_and_escaped_labels() -> None:
    bars = ET.fromstring(str(metric_bars([("a<b", 0.9, 0.95), ("c", 0.8, None)], "accuracy", "accuracy")))
    rects = [r for r in bars.iter(f"{SVG}rect") if r.get("data-series")]
    assert [(r.get("data-run"), r.get("data-series"), r.get("data-value")) for r in rects] == [
        ("a<b", "base", "0.9"),
        ("a<b", "corrected", "0.95"),
        ("c", "base", "0.8"),
    ]
    lines = ET.fromstring(str(requests_over_time([("one", [0.0, 0.5, 1.0]), ("two", [])])))
    assert [(p.get("data-run"), p.get("data-requests")) for p in lines.iter(f"{SVG}polyline")] == [
        ("one", "3"),
        ("two", "0"),
    ]
    assert _ticks(7, whole=True) == [0, 2, 4, 6, 8] and _ticks(1.0) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("10.0.0.5", False), ("box", False)],
)
def test_only_loopback_hosts_go_without_a_token(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
