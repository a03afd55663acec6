"""How runs read to people (issue 12), function by function: the status with failed rows, a flow error's type,
message and user line, the line a stopped run prints, plain progress lines, the runs list at 80 columns, `runs
compare` labels and empty cells, the report's timestamps and metric names."""

from __future__ import annotations

import importlib.util
import inspect
import io
import math
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from llmcorr.cli import progress
from llmcorr.cli._render import _metric_label, compare_table, confusion_table, metrics_table, runs_table
from llmcorr.correct.classes import Classes
from llmcorr.correct.gate import Gate
from llmcorr.correct.metrics_model import CorrectionMetrics
from llmcorr.correct.metrics_multiclass import multiclass_metrics
from llmcorr.report.html import _when
from llmcorr.runs.experiments import compare_runs, metric_values
from llmcorr.runs.flows import Flow, describe_error
from llmcorr.runs.status import describe, failing
from llmcorr.runs.stopping import ActiveRun
from llmcorr.store import RowRecord, RunRecord, Store
from llmcorr.view import metric_name as _metric_name
from llmcorr.view import row_view

GATED = {
    "n": 4,
    "base": {"roc_auc": 1.0, "accuracy": 1.0},
    "corrected": {"roc_auc": 1.0, "accuracy": 1.0},
    "flips": {"changed": 0, "wrong_to_right": 0, "right_to_wrong": 0},
    "ci95": {"delta": {"roc_auc": [0.0, 0.0], "accuracy": [0.0, 0.0]}},
    "mcnemar": {"discordant": 0, "p_value": 1.0},
    "calibration": {"base": {"brier": 0.01, "ece": 0.02, "curve": []}, "corrected": {"brier": 0.01, "ece": 0.02}},
    "parsed": 4,
    "gate": {
        "policy": "never",
        "threshold": 0.0,
        "validation_rows": 4,
        "validation_accuracy": {"base": 1.0, "corrected": 0.0, "gated": 1.0},
        "applied_on_validation": 0,
        "applied_on_test": 0,
    },
    "ungated": {
        "corrected": {"roc_auc": 0.67, "accuracy": 0.25},
        "flips": {"changed": 3, "wrong_to_right": 0, "right_to_wrong": 3},
    },
}
UNGATED = {k: v for k, v in GATED.items() if k not in ("gate", "ungated")}


def render(renderable: object, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


# the status with failed rows


@pytest.mark.parametrize(
    ("status", "failed", "text", "is_failing"),
    [
        ("completed", 0, "completed", False),
        ("completed", 3, "completed, 3 failed", True),
        ("cancelled", 1, "cancelled, 1 failed", True),
        ("interrupted", 2, "interrupted, 2 failed", True),
        ("running", 2, "running", False),  # still going: its failed rows may yet be counted
        ("failed", 0, "failed", True),
        ("failed", 5, "failed", True),
    ],
)
def test_status_text_and_what_status_failed_lists(status: str, failed: int, text: str, is_failing: bool) -> None:
    assert describe(status, failed) == text
    assert failing(status, failed) is is_failing


# a flow error: type, message, the user's line

USER_CODE = """
import json


def outer(value):
    return inner(value)


def inner(value):
    raise ValueError(f"bad value {value}\\nsecond line")  # inner raises


def parse(text):
    return json.loads(text)  # json raises below this line


def silent():
    raise KeyError()  # no message
"""


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[object]:
    path = tmp_path / "usercode.py"
    path.write_text(USER_CODE)
    spec = importlib.util.spec_from_file_location("usercode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("usercode", None)


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(USER_CODE.splitlines(), start=1) if marker in line)


def failure(fn: object, *args: object) -> BaseException:
    try:
        fn(*args)  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


def flow_of(fn: object) -> Flow:
    return Flow("usercode:fn", fn, dict(inspect.signature(fn).parameters))  # type: ignore[arg-type]


def test_describe_error_names_type_message_and_the_innermost_user_line(user_module: object) -> None:
    outer = user_module.outer  # type: ignore[attr-defined]
    text = describe_error(failure(outer, 7), flow_of(outer))
    assert re.fullmatch(r"ValueError: bad value 7 second line \((.+):(\d+)\)", text), text
    where = text.rpartition("(")[2].rstrip(")")
    path, _, line = where.rpartition(":")
    assert Path(path).name == "usercode.py" and int(line) == line_of("# inner raises")  # not outer's call of it


def test_describe_error_passes_over_library_frames(user_module: object) -> None:
    parse = user_module.parse  # type: ignore[attr-defined]
    exc = failure(parse, "not json")
    innermost = traceback.extract_tb(exc.__traceback__)[-1].filename
    assert Path(innermost).parent.name == "json"  # raised in the standard library, below the user's line
    text = describe_error(exc, flow_of(parse))
    assert text.startswith("JSONDecodeError: Expecting value")
    assert text.endswith(f"usercode.py:{line_of('# json raises')})"), text


def test_describe_error_of_an_exception_without_a_message(user_module: object) -> None:
    silent = user_module.silent  # type: ignore[attr-defined]
    text = describe_error(failure(silent), flow_of(silent))
    assert re.fullmatch(rf"KeyError \(\S*usercode\.py:{line_of('# no message')}\)", text), text


# the line a stopped run prints


def test_the_stopped_line_counts_kept_rows_and_quotes_the_resume_command() -> None:
    run = ActiveRun("abc123", "my run", rows_total=10, rows_kept=2)
    run.committed(RowRecord(2, None, {}, "ok"))
    run.committed(RowRecord(3, None, {}, "error", error="ValueError: x"))  # a failed row is retried on resume
    run.committed(RowRecord(4, None, {}, "unparsed"))
    line = run.stopped_line("stopped (Ctrl-C)")
    assert (
        line == "cancelled: run my run stopped (Ctrl-C); 4 of 10 rows kept; resume with `llmcorr runs resume 'my run'`"
    )
    with_config = ActiveRun("abc123", "r1", 5, 0).stopped_line("stopped", "conf dir/llmcorr.toml")
    assert with_config.endswith("`llmcorr runs resume r1 --config 'conf dir/llmcorr.toml'`"), with_config


# plain progress lines


def test_plain_progress_prints_every_tenth_and_a_final_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 3600.0)  # by the rows only, whatever the machine's speed
    out = io.StringIO()
    console = Console(file=out, width=300)
    assert not console.is_terminal
    with progress._plain_progress(console, 40, "running r1", None) as on_row:
        for i in range(40):
            on_row(RowRecord(i, None, {}, "error" if i == 5 else "ok", input_tokens=10, output_tokens=2))
    lines = out.getvalue().splitlines()
    done = [re.match(r"running r1: (\d+)/40 rows", line) for line in lines]
    assert [int(m.group(1)) if m else None for m in done] == list(range(4, 41, 4)), lines
    assert lines[0].startswith("running r1: 4/40 rows (10%), ") and "48 tok, 0 err" in lines[0]
    assert "ETA " in lines[0] and " in " not in lines[0]
    assert re.fullmatch(r"running r1: 40/40 rows \(100%\), [\d.]+ rows/s, 480 tok, 1 err, in \d+ s", lines[-1])
    assert "━" not in out.getvalue() and not re.search(r"\d:\d\d", out.getvalue())


def test_a_plain_line_the_clock_asked_for_is_not_followed_at_once_by_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow start (a model loading) prints a line by time at row 3; the next comes a whole step later, not at 4."""
    clock = iter([0.0, *(0.1 * i if i < 2 else 20.0 + 0.1 * i for i in range(40)), 100.0])  # 20 s for row 3
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with progress._plain_progress(Console(file=out, width=300), 40, "running r1", None) as on_row:
        for i in range(40):
            on_row(RowRecord(i, None, {}, "ok"))
    done = [int(m.group(1)) for m in re.finditer(r"running r1: (\d+)/40 rows", out.getvalue())]
    assert done[:3] == [3, 7, 11] and done[-1] == 40, done


def test_plain_progress_prints_nothing_for_no_rows() -> None:
    out = io.StringIO()
    with progress._plain_progress(Console(file=out), 0, "running r1", None):
        pass
    assert out.getvalue() == ""


# the runs list at 80 columns


def record(name: str, status: str = "completed", failed: int = 0, tags: list[str] | None = None) -> RunRecord:
    return RunRecord(
        id="0123456789ab",
        name=name,
        kind="flow",
        status=status,
        spec={},
        created_utc="2026-12-06T14:48:49.123+00:00",
        finished_utc=None,
        rows_total=400,
        rows_done=400,
        rows_failed=failed,
        input_tokens=123_456,
        output_tokens=7_890,
        metrics={"base": {"roc_auc": 0.9}, "corrected": {"roc_auc": 0.95}},
        error=None,
        tags=tags or [],
    )


def test_runs_table_keeps_whole_names_within_80_columns() -> None:
    names = ["experiment-with-a-long-name-01", "experiment-with-a-long-name-02", "a-much-longer-name-for-a-run-3x"]
    records = [record(names[0]), record(names[1], failed=12, tags=["baseline"]), record(names[2], "cancelled", 1)]
    text = render(runs_table(records, width=80), width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    for name in names:
        assert sum(name in line for line in lines) == 1, text
    assert any(names[1] in line and "completed, 12 failed" in line for line in lines), text
    wide = render(runs_table(records, width=200), width=200)
    assert "tokens" in wide and "131,346" in wide and "created" in wide  # room for every column: all are shown


# runs compare


def test_metric_labels_of_a_correct_run_read_as_words() -> None:
    labels = {key: _metric_label(key) for key in metric_values(GATED)}
    assert labels["flips.changed"] == "flips: changed"
    assert labels["mcnemar.p_value"] == "flips: McNemar p"
    assert labels["gate.policy"] == "gate: policy"
    assert labels["ungated.corrected.roc_auc"] == "without the gate: ROC-AUC"
    assert labels["ungated.flips.wrong_to_right"] == "without the gate: flips wrong to right"
    assert labels["calibration base ece"] == "calibration: base ECE"
    assert labels["roc_auc base"] == "ROC-AUC base"
    for key, label in labels.items():
        assert not label.startswith("flips: flips") and label.count(":") <= 1, (key, label)
        assert not re.search(r"\w\.\w", label) and "_" not in label, (key, label)  # no raw keys
    assert _metric_label("long_share") == "long_share"  # a flow's own metric: as it is


def test_compare_of_a_gated_and_an_ungated_run_has_no_nan_cells(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        for name, metrics in (("gated", GATED), ("plain", UNGATED)):
            run_id = store.create_run("correct", {}, 4, name=name)
            store.finish_run(run_id, "completed", metrics=metrics)
        frame = compare_runs(store, ["gated", "plain"])
    text = render(compare_table(frame))
    assert not re.search(r"\bnan\b", text, re.I), text
    policy = next(line for line in text.splitlines() if "gate: policy" in line)
    assert policy.split() == ["gate:", "policy", "never"], policy

    as_pandas = pd.DataFrame({"gated": metric_values(GATED), "plain": metric_values(UNGATED)})  # missing: NaN
    missing = as_pandas.loc["gate.threshold", "plain"]
    assert isinstance(missing, float) and math.isnan(missing)
    text = render(compare_table(as_pandas))
    assert not re.search(r"\bnan\b", text, re.I), text
    threshold = next(line for line in text.splitlines() if "gate: threshold" in line)
    assert threshold.split() == ["gate:", "threshold", "0.0000"], threshold


# the report


@pytest.mark.parametrize(
    ("stamp", "shown"),
    [
        ("2026-12-06T14:48:49.123+00:00", "2026-12-06 14:48 UTC"),
        ("2026-12-06T16:48:49+02:00", "2026-12-06 14:48 UTC"),
        ("2026-12-31T23:30:00-01:00", "2027-01-01 00:30 UTC"),
        (None, ""),
    ],
)
def test_report_timestamps_for_people(stamp: str | None, shown: str) -> None:
    assert _when(stamp) == shown


def test_report_metric_names_for_people() -> None:
    assert _metric_name("roc_auc") == "ROC-AUC"
    assert _metric_name("rmse") == "RMSE"
    assert _metric_name("some_new_metric") == "some new metric"


# a multiclass run's rows


def test_a_multiclass_rows_class_change_and_what_the_gate_held_back() -> None:
    classes = Classes(names=["cat", "dog", "owl"], prob_columns=["prob_cat", "prob_dog", "prob_owl"])
    gate = Gate("multiclass", 0.5)

    def row(i: int, split: str, prediction: str, corrected: str, probabilities: list[float]) -> RowRecord:
        inputs = {"id": f"r{i}", "input": f"x{i}", "prediction": prediction, "label": "dog", "split": split}
        inputs |= {f"prob_{c}": p for c, p in zip(classes.texts, probabilities, strict=True)}
        output = {"corrected_prediction": corrected, "explanation": None}
        return RowRecord(i, f"r{i}", inputs, "ok", output=output)

    unsure = row(0, "test", "cat", "dog", [0.5, 0.4, 0.1])  # margin 0.1: the gate lets it through
    sure = row(1, "test", "cat", "owl", [0.9, 0.05, 0.05])  # margin 0.85: held back
    kept = row(2, "test", "dog", "dog", [0.1, 0.8, 0.1])
    valid = row(3, "valid", "cat", "dog", [0.5, 0.4, 0.1])
    views = [row_view("correct", "multiclass", r, gate, classes) for r in (unsure, sure, kept, valid)]
    assert [(v.output, v.changed) for v in views] == [
        ("cat → dog", True),
        ("cat → owl (held back by the gate)", False),
        ("dog → dog", False),
        ("cat → dog (validation, for the gate)", None),
    ]


def test_the_cli_shows_a_multiclass_runs_confusion_base_to_corrected() -> None:
    metrics = CorrectionMetrics.model_validate(
        multiclass_metrics([0, 1, 2, 2], [0, 1, 1, 2], [0, 1, 2, 2], ["cat", "dog", "owl"])
    )
    shown = render(confusion_table(metrics))
    lines = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in shown.splitlines()
        if line.count("│") == 5
    }
    assert lines == {"cat": ["1", "0", "0"], "dog": ["0", "1", "0"], "owl": ["0", "1 → 0", "1 → 2"]}
    assert confusion_table(CorrectionMetrics.model_validate(GATED)) is None  # binary: none
    assert "macro-F1" in render(metrics_table(metrics)) and "recall: owl (n=2)" in render(metrics_table(metrics))
