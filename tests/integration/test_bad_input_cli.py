"""User errors: one line on stderr, exit code 2, no traceback, and no run recorded (no token spent)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmcorr.store import Store

from .conftest import run_cli, store_path


def assert_one_line_error(result: object, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0]


def test_corrupt_file(tmp_path: Path, llmcorr_home: Path) -> None:
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    assert_one_line_error(run_cli("correct", "--predictions", bad), "corrupt.parquet")
    assert not store_path(llmcorr_home).exists() or not Store(store_path(llmcorr_home)).list_runs()


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda f: f.drop(columns=["label"]), ("missing column 'label'",)),
        (lambda f: f.assign(prediction=["x", *list(f["prediction"][1:])]), ("row 1 (line 2)", "'prediction'")),
        (lambda f: f.assign(split=f["split"].replace("valid", "train")), ("valid split is empty",)),
        (lambda f: f.assign(split=f["split"].replace("test", "holdout")), ("unknown split 'holdout'",)),
    ],
)
def test_bad_tables(tmp_path: Path, cancer_table: pd.DataFrame, edit: object, needles: tuple[str, ...]) -> None:
    path = tmp_path / "bad.csv"
    edit(cancer_table.head(40).assign(split=["train"] * 20 + ["valid"] * 10 + ["test"] * 10)).to_csv(path, index=False)  # type: ignore[operator]
    assert_one_line_error(run_cli("correct", "--predictions", path), "bad.csv", *needles)


def test_label_outside_01_when_classification(tmp_path: Path, cancer_table: pd.DataFrame) -> None:
    path = tmp_path / "labels.csv"
    cancer_table.assign(label=[2, *list(cancer_table["label"][1:])]).to_csv(path, index=False)
    assert_one_line_error(
        run_cli("correct", "-p", path, "--problem", "classification"), "row 1 (line 2)", "expected 0 or 1"
    )


def test_bad_options(cancer_csv: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("correct", "-p", cancer_csv, "--column", "nonsense"), "--column")
    assert_one_line_error(run_cli("correct", "-p", cancer_csv, "--provider", "magic"), "--provider")
    assert_one_line_error(run_cli("correct", "-p", cancer_csv, "--provider", "openai"), "model")
    assert_one_line_error(run_cli("correct", "-p", cancer_csv, "-o", tmp_path / "x.txt"), "unknown output type")
    tpl = tmp_path / "t.jinja"
    tpl.write_text("system:\n{{ undefined_thing }}\n")
    assert_one_line_error(run_cli("correct", "-p", cancer_csv, "--template", tpl), "t.jinja:2", "undefined_thing")
    assert_one_line_error(run_cli("runs", "show", "no-such-run"), "no-such-run")
    assert_one_line_error(run_cli("correct", "-p", cancer_csv, "--model-path", tmp_path / "none.gguf"), "none.gguf")


def test_usage_errors_exit_2(cancer_csv: Path) -> None:
    r = run_cli("correct", "--shots", "many", "-p", cancer_csv)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_delete_needs_yes_without_a_terminal(llmcorr_home: Path) -> None:
    with Store(store_path(llmcorr_home)) as store:
        run_id = store.create_run("correct", {}, 0, name="old")
        store.finish_run(run_id, "completed")
    assert_one_line_error(run_cli("runs", "delete", "old"), "pass --yes")
    assert run_cli("runs", "delete", "old", "--yes").returncode == 0
    with Store(store_path(llmcorr_home)) as store:
        assert store.list_runs() == []
