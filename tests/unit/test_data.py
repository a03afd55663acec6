from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmcorr.correct.data import load_predictions
from llmcorr.data import RowWriter, as_frame, check_output_path, write_table
from llmcorr.data.output import WRITE_EVERY_S
from llmcorr.errors import DataError

ROWS = [
    {"id": "a", "input": "x=1", "prediction": 0.9, "label": 1, "split": "train"},
    {"id": "b", "input": "x=2", "prediction": 0.2, "label": 0, "split": "valid"},
    {"id": "c", "input": "x=3", "prediction": 0.7, "label": 0, "split": "test"},
    {"id": "d", "input": "x=4", "prediction": 0.4, "label": 1, "split": "val"},
]


def write_csv(tmp_path: Path, rows: list[dict], name: str = "p.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_jsonl_parquet_and_dataframe_load_alike(tmp_path: Path) -> None:
    frame = pd.DataFrame(ROWS)
    frame.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "p.parquet")
    loaded = [
        load_predictions(src)
        for src in (write_csv(tmp_path, ROWS), tmp_path / "p.jsonl", tmp_path / "p.parquet", frame)
    ]
    for table in loaded:
        assert table.problem == "classification"
        assert list(table.frame["split"]) == ["train", "valid", "test", "valid"]
        assert list(table.frame["prediction"]) == [0.9, 0.2, 0.7, 0.4]
        assert list(table.frame["label"]) == [1.0, 0.0, 0.0, 1.0]
        assert list(table.split("valid")["id"]) == ["b", "d"]


def test_column_mapping(tmp_path: Path) -> None:
    rows = [{("smiles" if k == "input" else k): v for k, v in r.items()} for r in ROWS]
    table = load_predictions(write_csv(tmp_path, rows), columns={"input": "smiles"})
    assert list(table.frame["input"]) == ["x=1", "x=2", "x=3", "x=4"]
    assert "smiles" in table.frame.columns


def test_regression_is_detected_from_labels(tmp_path: Path) -> None:
    rows = [dict(r, label=r["prediction"] * 10 + 0.5, prediction=r["prediction"] * 10) for r in ROWS]
    table = load_predictions(write_csv(tmp_path, rows))
    assert table.problem == "regression"
    assert table.frame["label"].iloc[0] == pytest.approx(9.5)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({2: {"prediction": "abc"}}, r"row 3 \(line 4\), column 'prediction': expected a finite number, got 'abc'"),
        ({1: {"split": "holdout"}}, r"row 2 \(line 3\), column 'split': unknown split 'holdout'"),
        ({3: {"id": "a"}}, r"row 4 \(line 5\), column 'id': duplicate id 'a'"),
        ({0: {"input": ""}}, r"row 1 \(line 2\), column 'input': empty value"),
        ({2: {"prediction": "inf"}}, r"column 'prediction': expected a finite number"),
    ],
)
def test_bad_values_name_row_and_column(tmp_path: Path, change: dict, expected: str) -> None:
    rows = [dict(r, **change.get(i, {})) for i, r in enumerate(ROWS)]
    path = write_csv(tmp_path, rows)
    with pytest.raises(DataError, match=expected) as info:
        load_predictions(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_label_outside_01_for_classification(tmp_path: Path) -> None:
    rows = [dict(r, label=2) if i == 2 else r for i, r in enumerate(ROWS)]
    with pytest.raises(DataError, match=r"row 3 .*column 'label': expected 0 or 1 for classification, got '2'"):
        load_predictions(write_csv(tmp_path, rows), problem="classification")


def test_probability_outside_01_for_classification(tmp_path: Path) -> None:
    rows = [dict(r, prediction=1.5) if i == 1 else r for i, r in enumerate(ROWS)]
    with pytest.raises(DataError, match=r"row 2 .*expected a probability in \[0, 1\]"):
        load_predictions(write_csv(tmp_path, rows))


def test_missing_column_lists_what_was_found(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "prediction"} for r in ROWS]
    with pytest.raises(DataError, match=r"missing column 'prediction'; found: id, input, label, split"):
        load_predictions(write_csv(tmp_path, rows))


def test_mapped_column_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing column 'smiles' \(for input\)"):
        load_predictions(write_csv(tmp_path, ROWS), columns={"input": "smiles"})


@pytest.mark.parametrize("split", ["test", "valid"])
def test_empty_split(tmp_path: Path, split: str) -> None:
    rows = [dict(r, split="train") if r["split"] in (split, "val" if split == "valid" else split) else r for r in ROWS]
    with pytest.raises(DataError, match=f"the {split} split is empty"):
        load_predictions(write_csv(tmp_path, rows))


def test_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "junk.csv"
    binary.write_bytes(b"id,input\n\xff\xfe\x00\x81garbage\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_predictions(binary)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_predictions(empty)
    parquet = tmp_path / "bad.parquet"
    parquet.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="cannot read as parquet"):
        load_predictions(parquet)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"id": "a"}\n{oops\n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        load_predictions(jsonl)
    with pytest.raises(DataError, match="no such file"):
        load_predictions(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="unknown file type"):
        load_predictions(tmp_path / "preds.xlsx")


def test_ragged_csv(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("id,input,prediction,label,split\na,x,0.1,0,test\nb,y,0.2,1,valid,extra,more\n")
    with pytest.raises(DataError, match="cannot parse CSV"):
        load_predictions(path)


def test_write_table_round_trips(tmp_path: Path) -> None:
    frame = pd.DataFrame(ROWS)
    for suffix in (".csv", ".jsonl", ".parquet"):
        path = write_table(frame, tmp_path / f"out{suffix}")
        assert len(load_predictions(path).frame) == 4
        assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(DataError, match="unknown output type"):
        check_output_path(tmp_path / "out.txt")
    with pytest.raises(DataError, match="does not exist"):
        check_output_path(tmp_path / "nowhere" / "out.csv")


def test_row_writer_appends_as_rows_finish_then_orders(tmp_path: Path) -> None:
    for suffix in (".jsonl", ".csv"):
        path = tmp_path / f"rows{suffix}"
        writer = RowWriter(path)
        writer.write(2, {"word": "c", "output": {"n": 1}})  # the first line is appended at once
        writer.write(0, {"word": "a", "output": None})  # the next ones at most WRITE_EVERY_S later, as whole lines
        header = 0 if suffix == ".jsonl" else 1
        assert len(path.read_text().splitlines()) == header + 1
        time.sleep(WRITE_EVERY_S)
        writer.write(1, {"word": "b", "output": None})
        partial = path.read_text().splitlines()
        assert len(partial) == header + 3 and path.read_text().endswith("\n")  # visible before the run ends
        assert ('"row": 3' in partial[0]) if suffix == ".jsonl" else partial[1].startswith("3,c,")
        writer.finish(pd.DataFrame({"word": ["a", "b", "c"]}))
        assert path.read_text().split() == (
            ['{"word":"a"}', '{"word":"b"}', '{"word":"c"}'] if suffix == ".jsonl" else ["word", "a", "b", "c"]
        )
    parquet = tmp_path / "rows.parquet"
    writer = RowWriter(parquet)
    writer.write(0, {"word": "a"})
    assert not parquet.exists()  # Parquet cannot grow: written once, at the end
    writer.finish(pd.DataFrame({"word": ["a"]}))
    assert list(pd.read_parquet(parquet)["word"]) == ["a"]


def test_as_frame_takes_paths_and_dataframe_likes(tmp_path: Path) -> None:
    import polars as pl

    frame, where, source = as_frame(pl.DataFrame({"q": ["x", "y"]}))
    assert list(frame["q"]) == ["x", "y"] and where(1) == "row 2" and source == "DataFrame"
    path = tmp_path / "q.csv"
    path.write_text("q\nx\n")
    frame, where, source = as_frame(path)
    assert list(frame["q"]) == ["x"] and where(0) == "row 1 (line 2)" and source == str(path)
    with pytest.raises(DataError, match="expected a file path or a DataFrame, got int"):
        as_frame(3)


def iris_like(labels: list[object], predictions: list[object]) -> pd.DataFrame:
    splits = ["train", "valid", "test"]
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(labels))],
            "input": [f"petal={i}" for i in range(len(labels))],
            "prediction": predictions,
            "label": labels,
            "split": [splits[i % 3] for i in range(len(labels))],
        }
    )


INTEGER_CLASSES = [0, 1, 2, 2, 0, 1, 1, 2, 0]


NAMES = ["setosa", "versicolor", "virginica"]
PREDICTED = [0, 1, 2, 1, 0, 1, 2, 2, 0]  # rows 4 and 7 (1-based) are wrong


@pytest.mark.parametrize("problem", ["auto", "classification", "multiclass"])
def test_three_integer_classes_are_a_multiclass_problem(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "iris.csv"
    iris_like(INTEGER_CLASSES, PREDICTED).to_csv(path, index=False)
    table = load_predictions(path, problem=problem)  # type: ignore[arg-type]
    assert table.problem == "multiclass" and table.classes is not None
    assert table.classes.names == [0, 1, 2] and table.classes.probabilities(table.frame) is None
    assert list(table.frame["label"]) == INTEGER_CLASSES and list(table.frame["prediction"]) == PREDICTED


def test_text_labels_are_classes_matched_whatever_their_case_and_spacing() -> None:
    predicted = [f"  {NAMES[c].upper()} " for c in PREDICTED]
    table = load_predictions(iris_like([NAMES[c] for c in INTEGER_CLASSES], predicted))
    assert table.problem == "multiclass" and table.classes is not None and table.classes.names == NAMES
    assert list(table.frame["prediction"]) == [NAMES[c] for c in PREDICTED]  # each as the label column writes it
    two = load_predictions(iris_like(["cat", "dog"] * 4 + ["cat"], ["dog", "dog"] * 4 + ["cat"]))
    assert two.problem == "multiclass" and two.classes is not None and two.classes.names == ["cat", "dog"]
    binary = load_predictions(iris_like([0, 1] * 4 + [1], [0, 1] * 4 + [1]), problem="multiclass")
    assert binary.problem == "multiclass" and binary.classes is not None and binary.classes.names == [0, 1]


def _with_probabilities(frame: pd.DataFrame) -> pd.DataFrame:
    for k, name in enumerate(NAMES):
        frame[f"prob_{name}"] = [0.8 if c == k else 0.1 for c in PREDICTED]
    return frame


def test_probabilities_as_one_column_per_class_or_one_json_or_list_column(tmp_path: Path) -> None:
    labels = [NAMES[c] for c in INTEGER_CLASSES]
    expected = [[0.8 if c == k else 0.1 for k in range(3)] for c in PREDICTED]
    per_class = _with_probabilities(iris_like(labels, [NAMES[c] for c in PREDICTED]))
    as_dicts = iris_like(labels, [NAMES[c] for c in PREDICTED])
    as_dicts["scores"] = [json.dumps({NAMES[c]: 0.9, NAMES[(c + 1) % 3]: 0.1}) for c in PREDICTED]
    as_lists = iris_like(labels, [NAMES[c] for c in PREDICTED])
    as_lists["probabilities"] = [list(row) for row in expected]
    as_lists.to_parquet(tmp_path / "lists.parquet")
    for source, columns in (
        (per_class, None),
        (as_dicts, {"probabilities": "scores"}),
        (tmp_path / "lists.parquet", None),
    ):
        table = load_predictions(source, columns=columns)
        assert table.classes is not None
        read = table.classes.probabilities(table.frame)
        assert read is not None and read.sum(axis=1) == pytest.approx([1.0] * len(PREDICTED))
        if source is not as_dicts:
            assert read.ravel().tolist() == pytest.approx([p for row in expected for p in row])
        else:  # a class left out of a JSON object has 0
            assert read.argmax(axis=1).tolist() == PREDICTED and (read == 0).sum() == len(PREDICTED)
        confidence = table.classes.confidence(read, table.classes.indices(table.frame["prediction"]))
        assert confidence.tolist() == pytest.approx([0.7 if source is not as_dicts else 0.8] * len(PREDICTED))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda f: f.assign(prediction=["setosa"] * 8 + ["rose"]),
            r"line 9, .*'prediction': expected one of the classes \('setosa', 'versicolor', 'virginica'\), got 'rose'",
        ),
        (
            lambda f: f.drop(columns=["prob_virginica"]),
            r"missing column 'prob_virginica' \(a prob_<class> column for each class, or none\)",
        ),
        (lambda f: f.assign(prob_rose=0.0), r"column 'prob_rose' names no class"),
        (
            lambda f: f.assign(prob_setosa=[*f["prob_setosa"][:8], 1.0]),
            r"line 9, .*prob_<class> columns: the class probabilities sum to 1\.2 \(expected 1\)",
        ),
        (
            lambda f: f.assign(prob_setosa=[*f["prob_setosa"][:8], "high"]),
            r"line 9, .*column 'prob_setosa': expected a probability in \[0, 1\], got 'high'",
        ),
        (
            lambda f: f.assign(label=[["setosa", "virginica"], *list(f["label"][1:])]),
            r"line 1, .*'label': a list of labels .*multi-label correction is not supported",
        ),
        (
            lambda f: f.assign(label=['["setosa", "virginica"]', *list(f["label"][1:])]),
            r"line 1, .*'label': a list of labels .*multi-label correction is not supported",
        ),
        (
            lambda f: f.assign(label=["Setosa", *list(f["label"][1:])]),
            r"the labels 'Setosa' and 'setosa' differ only in case or spacing",
        ),
        (lambda f: f.assign(probabilities="[0.2, 0.8]"), r"both a 'probabilities' column and prob_<class> columns"),
    ],
)
def test_multiclass_mistakes_are_one_line_naming_row_and_column(tmp_path: Path, change: Any, expected: str) -> None:
    frame = change(_with_probabilities(iris_like([NAMES[c] for c in INTEGER_CLASSES], [NAMES[c] for c in PREDICTED])))
    path = tmp_path / "iris.jsonl"
    frame.to_json(path, orient="records", lines=True)
    with pytest.raises(DataError, match=expected) as info:
        load_predictions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_json_probabilities_that_do_not_fit_the_classes() -> None:
    frame = iris_like([NAMES[c] for c in INTEGER_CLASSES], [NAMES[c] for c in PREDICTED])
    for cell, expected in (
        ("[0.5, 0.5]", r"row 1, column 'probabilities': 2 probabilities for 3 classes"),
        ('{"rose": 1.0}', r"row 1, column 'probabilities': 'rose' is not a class"),
        ("high", r"row 1, column 'probabilities': expected a JSON object \{class: probability\} or a list of 3"),
    ):
        with pytest.raises(DataError, match=expected):
            load_predictions(frame.assign(probabilities=cell))
    with pytest.raises(DataError, match=r"missing column 'scores' \(for probabilities\)"):
        load_predictions(frame, columns={"probabilities": "scores"})


def test_a_probability_for_labels_that_are_not_0_or_1_is_still_a_label_mistake() -> None:
    labels = [0, 1, 2, 1, 0, 1, 0, 1, 0]  # one 2 among binary labels, predictions are probabilities
    with pytest.raises(DataError, match=r"row 3, column 'label': expected 0 or 1 for classification, got 2"):
        load_predictions(iris_like(labels, [0.2, 0.7, 0.4, 0.9, 0.1, 0.6, 0.3, 0.8, 0.2]), problem="classification")
    with pytest.raises(DataError, match=r"row 2, column 'label': expected a class label .* for multiclass, got 1.5"):
        load_predictions(iris_like([1, 1.5, 2] * 3, [1, 1, 2] * 3), problem="multiclass")


def test_problem_regression_overrides_the_inference_for_integer_labels() -> None:
    table = load_predictions(iris_like(INTEGER_CLASSES, PREDICTED), problem="regression")
    assert table.problem == "regression" and list(table.frame["label"]) == [float(c) for c in INTEGER_CLASSES]


def test_integer_targets_with_a_regressors_predictions_stay_regression() -> None:
    counts = [3, 7, 12, 5, 9, 4, 8, 11, 6]
    table = load_predictions(iris_like(counts, [c + 0.4 for c in counts]))
    assert table.problem == "regression"
    binary = load_predictions(iris_like([0, 1] * 4 + [1], [0, 1] * 4 + [1]))  # hard 0/1 predictions
    assert binary.problem == "classification"
