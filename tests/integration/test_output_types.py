"""A correct run's output keeps each column's type: a label (or a prediction) that came in as whole numbers is
written as `0`, not `0.0`, in CSV and JSONL, through `llmcorr correct`, the Python API and a report rebuilt from the
store; a float column stays float. Answers come from the quota server on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import llmcorr
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.runs.correction import recorded_table
from llmcorr.store import Store
from tests.conftest import LLMCORR

from .conftest import quota_toml, store_path


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer(QuotaServerConfig(rpm=60_000, tpm=10_000_000)) as srv:
        yield srv


def endpoint(srv: QuotaServer) -> llmcorr.EndpointConfig:
    return llmcorr.EndpointConfig(name="q", kind="openai", base_url=srv.base_url, model="m", max_concurrency=2)


def table(labels: list, predictions: list, **extra: list) -> pd.DataFrame:
    """Six rows in each split: id, input, prediction, label, split, and any `extra` columns."""
    n = len(labels)
    splits = [("train", "valid", "test")[i % 3] for i in range(n)]
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "input": [f"x={i}" for i in range(n)], "prediction": predictions}
        | {"label": labels, "split": splits}
        | extra
    )


def test_cli_output_keeps_integer_labels_and_columns_in_csv_and_jsonl(tmp_path: Path, server: QuotaServer) -> None:
    labels = [i % 2 for i in range(18)]
    preds = table(labels, [0.2 + 0.03 * i for i in range(18)], age=list(range(40, 58)))
    preds.to_csv(tmp_path / "preds.csv", index=False)
    (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url))
    for out in ("out.csv", "out.jsonl"):
        r = subprocess.run(
            [LLMCORR, "correct", "-p", "preds.csv", "-o", out, "--limit", "4", "--gate-rows", "4", "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**os.environ},
        )
        assert r.returncode == 0, r.stderr
    with (tmp_path / "out.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        assert row["label"] in ("0", "1") and row["corrected_label"] in ("0", "1") and row["age"].isdigit()
        assert "." in row["prediction"]  # a float stays a float
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(type(line["label"]) is int and type(line["corrected_label"]) is int for line in lines)
    assert all(type(line["prediction"]) is float for line in lines)


def test_api_table_and_report_keep_integer_labels(tmp_path: Path, server: QuotaServer, llmcorr_home: Path) -> None:
    frame = table([i % 2 for i in range(18)], [0.1 + 0.04 * i for i in range(18)])
    result = llmcorr.correct(frame, provider=endpoint(server), limit=4, gate_rows=4, output=tmp_path / "o.jsonl")
    assert result.table["label"].dtype == "int64" and result.table["corrected_label"].dtype == "int64"
    with Store(store_path(llmcorr_home)) as store:
        rebuilt, _ = recorded_table(store, store.get_run(result.run_id))
    assert rebuilt["label"].dtype == "int64"  # a report shows 0 and 1, as the output did


def test_regression_keeps_whole_number_labels_and_predictions_and_float_ones(
    tmp_path: Path, server: QuotaServer
) -> None:
    whole = table([100 + 7 * i for i in range(18)], [98 + 7 * i for i in range(18)])
    whole.to_json(tmp_path / "whole.jsonl", orient="records", lines=True)
    llmcorr.correct(
        tmp_path / "whole.jsonl",
        provider=endpoint(server),
        problem="regression",
        limit=4,
        gate_rows=4,
        output=tmp_path / "whole_out.jsonl",
    )
    rows = [json.loads(line) for line in (tmp_path / "whole_out.jsonl").read_text().splitlines()]
    assert all(type(r["label"]) is int and type(r["prediction"]) is int for r in rows), rows[0]

    halves = table([1.5 + i for i in range(17)] + [3.0], [1.0 + i for i in range(18)])
    llmcorr.correct(
        halves, provider=endpoint(server), problem="regression", limit=4, gate_rows=4, output=tmp_path / "h.csv"
    )
    with (tmp_path / "h.csv").open() as fh:
        written = list(csv.DictReader(fh))
    assert all("." in r["label"] and "." in r["prediction"] for r in written)  # floats stay floats (2.0, not 2)
