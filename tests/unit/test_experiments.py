"""The experiments layer on a real store file with synthetic runs: compare's table, deletes, renames, tags, rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcorr.errors import NotFoundError, UserError
from llmcorr.runs import experiments
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


def test_compare_puts_runs_side_by_side(store: Store) -> None:
    finished(store, "corr", "correct", CORRECT, cost=0.25)
    finished(store, "flow", "flow", {"score": 0.9})
    frame = compare_runs(store, ["corr", "flow", "corr"])  # a run named twice is one column
    assert list(frame.columns) == ["corr", "flow"] and frame.index.name == "metric"
    assert list(frame.index[:2]) == ["kind", "status"] and list(frame.index[-3:]) == [
        "wall time (s)",
        "429s",
        "cost ($)",
    ]
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
