"""The experiments layer on a real store file with synthetic runs: compare's table, deletes, renames, tags, rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmcorr import view
from llmcorr.correct import multiclass_metrics
from llmcorr.errors import NotFoundError, UserError
from llmcorr.runs import experiments, summary
from llmcorr.runs.experiments import Experiments, compare_runs, metric_values
from llmcorr.store import RowRecord, Store

CORRECT = {
    "n": 4,
    "base": {"roc_auc": 0.75, "accuracy": 0.5},
    "corrected": {"roc_auc": None, "accuracy": 0.75},
    "flips": {"changed": 1, "wrong_to_right": 1, "right_to_wrong": 0},
    "parsed": 4,
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "s.db") as s:
        yield s


def finished(store: Store, name: str, kind: str = "prompt", metrics: dict | None = None, **usage: float) -> str:
    run_id = store.create_run(kind, {}, 2, name=name)
    store.add_row(run_id, RowRecord(0, None, {}, "ok", input_tokens=10, output_tokens=2))
    endpoint = {"ok": 1, "input_tokens": 10, "output_tokens": 2, "rate_limited": 3, **usage}
    store.finish_run(run_id, "completed", metrics=metrics, usage={"q": endpoint})
    return run_id


def test_metric_values_pairs_base_and_corrected_and_flattens_the_rest() -> None:
    values = metric_values(CORRECT)
    assert list(values)[:4] == ["roc_auc base", "roc_auc corrected", "accuracy base", "accuracy corrected"]
    assert values["roc_auc corrected"] is None and values["flips.wrong_to_right"] == 1 and values["parsed"] == 4
    assert metric_values({"score": 0.5, "by": {"a": 1, "b": [1, 2]}}) == {"score": 0.5, "by.a": 1, "by.b": "[1, 2]"}
    assert metric_values(None) == {}
    multiclass = metric_values(
        multiclass_metrics([0, 1, 2, 2], [0, 1, 1, 2], [0, 1, 2, 2], ["cat", "dog", "owl"]) | {"parsed": 4}
    )
    assert [k for k in multiclass if not k.endswith("CI")][:4] == [
        "accuracy base",
        "accuracy corrected",
        "macro_f1 base",
        "macro_f1 corrected",
    ]
    assert multiclass["recall owl base"] == 0.5 and multiclass["recall owl corrected"] == 1.0
    assert multiclass["recall owl change, 95% CI"].startswith("[+")  # owl's recall only went up
    assert not any(k.startswith(("confusion", "per_class")) for k in multiclass)  # the matrices are the report's
    assert metric_values({"confusion": [1], "per_class": {"a": 1}}) == {"confusion": "[1]", "per_class.a": 1}


def test_compare_puts_runs_side_by_side(store: Store) -> None:
    finished(store, "corr", "correct", CORRECT, cost=0.25)
    finished(store, "flow", "flow", {"score": 0.9})
    frame = compare_runs(store, ["corr", "flow", "corr"])  # a run named twice is one column
    assert list(frame.columns) == ["corr", "flow"] and frame.index.name == "metric"
    assert list(frame.index[:2]) == ["kind", "status"] and list(frame.index[-3:]) == [
        "wall time (s)",
        "429s",
        "cost ($)",
    ]  # no run was resumed after a pause: no "first to last" row
    assert frame.loc["accuracy corrected", "corr"] == 0.75 and frame.loc["accuracy corrected", "flow"] is None
    assert frame.loc["score", "flow"] == 0.9 and frame.loc["tokens", "flow"] == 12 and frame.loc["429s", "corr"] == 3
    assert frame.loc["cost ($)", "corr"] == 0.25 and frame.loc["cost ($)", "flow"] is None
    assert frame.loc["wall time (s)", "corr"] >= 0
    finished(store, "flow2", "flow", {"score": 0.1})
    assert "cost ($)" not in compare_runs(store, ["flow", "flow2"]).index  # no run had a price
    with pytest.raises(UserError, match="at least two"):
        compare_runs(store, ["corr", "corr"])


def test_delete_refuses_a_running_run_and_keeps_a_shared_output(store: Store, tmp_path: Path) -> None:
    running = store.create_run("prompt", {}, 1, name="busy")
    with pytest.raises(UserError, match="is running; cancel it first"):
        experiments.delete_run(store, "busy")
    out = tmp_path / "out.csv"
    out.write_text("x\n")
    a, b = finished(store, "a"), finished(store, "b")
    store.set_output_path(a, out)
    store.set_output_path(b, out)
    assert experiments.output_to_delete(store, store.get_run(a)) is None
    experiments.delete_run(store, "a")
    assert out.exists() and experiments.output_to_delete(store, store.get_run(b)) == out
    experiments.delete_run(store, "b")
    assert not out.exists() and store.get_run(running).status == "running"


def test_rename_tags_and_rows_are_checked(store: Store) -> None:
    first, _ = finished(store, "first"), finished(store, "second")
    with pytest.raises(UserError, match="another run's id"):
        experiments.rename_run(store, "second", first)
    assert experiments.rename_run(store, "second", "  2nd ").name == "2nd"
    with pytest.raises(UserError, match="has no tag 'x'"):
        experiments.tag_run(store, "first", remove=["x"])
    with pytest.raises(UserError, match="no tag given"):
        experiments.tag_run(store, "first")
    assert experiments.tag_run(store, "first", add=["b", "a"]) == ["a", "b"]
    with pytest.raises(UserError, match="--row 3: run first has rows 1 to 2"):
        experiments.run_logs(store, "first", row=3)
    with pytest.raises(UserError, match="--status"):
        experiments.list_runs(store, status="done")


def test_the_namespace_opens_the_store_it_is_given(store: Store, tmp_path: Path) -> None:
    finished(store, "one")
    by_path, by_store = Experiments(store.path), Experiments(store)
    assert by_path.get_run("one").name == by_store.get_run("one").name == "one"
    assert by_path.archive_run("one").archived and by_store.list_runs() == []
    assert [r.name for r in by_store.list_runs(archived=True)] == ["one"]
    assert "s.db" in repr(by_path)
    with pytest.raises(NotFoundError):
        Experiments(tmp_path / "empty.db").get_run("one")


def _resumed(store: Store, name: str, pause_s: float) -> str:
    """A run worked on by two processes (two Stores) with `pause_s` between them: the first stopped (cancelled), the
    second resumed it and finished. The pause is made by moving the first process's times back."""
    with Store(store.path) as first:
        run_id = first.create_run("prompt", {}, 2, name=name)
        first.add_rows(run_id, [RowRecord(0, None, {}, "ok", input_tokens=10, output_tokens=2)], usage=USAGE)
        first.finish_run(run_id, "cancelled", usage=USAGE)
    back = datetime.now(UTC) - timedelta(seconds=pause_s + 2)
    store.conn.execute(
        "UPDATE run_segments SET started_utc = ?, active_utc = ? WHERE run_id = ?",
        (back.isoformat(), (back + timedelta(seconds=2)).isoformat(), run_id),
    )
    store.conn.execute("UPDATE runs SET created_utc = ? WHERE id = ?", (back.isoformat(), run_id))
    with Store(store.path) as second:
        second.reopen_run(run_id)
        second.add_rows(run_id, [RowRecord(1, None, {}, "ok", input_tokens=10, output_tokens=2)], usage=USAGE)
        second.finish_run(run_id, "completed", usage=USAGE)
    return run_id


USAGE = {"q": {"requests": 2, "ok": 2, "rate_limited": 0, "errors": 0, "input_tokens": 20, "output_tokens": 4}}
USAGE["q"] |= {"cost": 0.01}


def test_wall_time_is_the_busy_time_with_the_span_shown_where_a_run_was_paused(store: Store) -> None:
    """Issue 12: a resumed run's wall time jumped from 51.8 s to 3.5 min (creation to finish, the pause counted),
    and the CLI, the dashboard and compare each computed it their own way."""
    run_id = _resumed(store, "paused", pause_s=200)
    record = store.get_run(run_id)
    wall = summary.wall_time(record)
    assert wall.busy_s is not None and wall.span_s is not None
    assert 2 <= wall.busy_s < 30 and wall.span_s >= 200 + 2  # busy: the two processes; span: pause included
    span = f"{wall.span_s / 60:.1f} min"
    assert wall.paused and str(wall) == f"busy {summary.seconds(wall.busy_s)} (first to last {span})"
    shown = view.run_summary(record)  # one definition everywhere, one name: the CLI's, the dashboard's, compare's
    assert experiments.wall_time_s(record) == shown["wall_time_s"] == wall.busy_s
    assert (shown["span_s"], shown["wall"]) == (wall.span_s, str(wall))
    assert summary.cost(record) == shown["cost"] == pytest.approx(0.02)  # each process's last snapshot, summed
    assert shown["usage_lines"] == [("q", "4 requests, 48 tokens, 0 429s, $0.0200")]
    finished(store, "straight")
    frame = compare_runs(store, ["paused", "straight"])
    assert frame.loc["wall time (s)", "paused"] == pytest.approx(wall.busy_s, abs=0.5)
    assert frame.loc["first to last (s)", "paused"] == pytest.approx(wall.span_s, abs=0.5)
    straight = summary.wall_time(store.get_run("straight"))
    assert not straight.paused and str(straight) == summary.seconds(straight.busy_s)


def test_wall_time_of_a_running_run_counts_to_now_and_of_an_old_record_is_its_span(store: Store) -> None:
    run_id = store.create_run("prompt", {}, 1, name="live")
    record = store.get_run(run_id)
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert summary.wall_time(record, now=later).busy_s == pytest.approx(30, abs=1)
    old = replace(record, status="completed", busy_s=None, active_utc=None, finished_utc=later.isoformat())
    assert summary.wall_time(old).busy_s == summary.wall_time(old).span_s == pytest.approx(30, abs=1)
    assert summary.endpoint_usage({"requests": 5, "ok": 3, "rate_limited": 2, "input_tokens": 1000}) == (
        "5 requests (3 answered), 1,000 tokens, 2 429s"
    )
