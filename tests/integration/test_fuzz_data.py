"""Broken data files through every command that reads one: `llmcorr correct -p FILE`, `llmcorr run P --data FILE`
and `llmcorr prompt preview P --data FILE`.

Each property starts from a valid predictions table (which runs: a positive control that the harness sees a run
spend) and breaks it one way: bytes that are not UTF-8, ragged rows, an open quote, megabyte cells, NaN and ±inf,
duplicate ids, missing or renamed columns, empty and header-only files, random bytes; JSON lines that are cut,
not objects, nested, lone surrogate escapes, nested 100,000 deep; Parquet columns of the wrong type, truncated and
bit-flipped files. What is broken for a command is refused — exit code 2, one line naming the file (and the line or
row, and the column, where there is one), before a run is recorded or a request sent; what may still be valid
either runs or is refused that way. Never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.servers import ScriptedServer

from .fuzz import Fuzz, Outcome, fuzz_settings, ran, ran_or_refused, refused

HEADER = ("id", "input", "prediction", "label", "split")
ROWS = (
    ("s1", "mean radius 17.9, texture 10.4", "0.97", "1", "train"),
    ("s2", "mean radius 11.4, texture 20.4", "0.08", "0", "train"),
    ("s3", "mean radius 20.6, texture 29.3", "0.91", "1", "valid"),
    ("s4", "mean radius 12.5, texture 15.7", "0.12", "0", "valid"),
    ("s5", "mean radius 13.1, texture 21.8", "0.64", "1", "valid"),
    ("s6", "mean radius 9.5, texture 12.4", "0.21", "0", "test"),
    ("s7", "mean radius 19.8, texture 22.2", "0.88", "1", "test"),
)
PROMPTY = """---
name: Describe
model:
  parameters:
    max_tokens: 4
inputs:
  input:
    type: string
---
user:
Describe {{ input }} in one word.
"""
COMMANDS = ("correct", "run", "preview")
NONFINITE = ("nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e999")
NOT_UTF8 = (b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf")
BAD = "@@BAD@@"  # where a byte-level break goes, after the table is written
FIRST_LINE_LONGER = "the first data line has more fields than the header's 5"  # else pandas shifts the columns


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    with ScriptedServer() as server:
        yield Fuzz(server, tmp_path_factory.mktemp("fuzz-data"))


@dataclass(frozen=True)
class Broken:
    """A data file and how it was broken: `row` (0-based data row) and `column` where one was."""

    family: str
    name: str
    content: bytes
    row: int = 0
    column: str = "input"
    line: int = 0  # the physical line of `row`, for text files (1 = the first line)
    first: str = ""  # duplicate_id: how the messages name the earlier row whose id is repeated
    valid: bool = False  # broken in a way that is still valid for `correct`


def call(fuzz: Fuzz, broken: Broken, command: str) -> Outcome:
    """`command` over `broken`, written into a fresh directory beside the prompt file."""
    with fuzz.workdir() as workdir:
        (workdir / broken.name).write_bytes(broken.content)
        (workdir / "p.prompty").write_text(PROMPTY)
        if command == "correct":
            args = ["correct", "-p", broken.name, "--shots", "1", "--limit", "1", "--no-gate", "--yes", "-q"]
        elif command == "run":
            args = ["run", "p.prompty", "--data", broken.name, "-q"]
        else:
            args = ["prompt", "preview", "p.prompty", "--data", broken.name, "--row", str(broken.row + 1)]
        return fuzz.call(workdir, *args)


def ran_valid(command: str, outcome: Outcome) -> None:
    """A valid file: the run went to the server, or the preview showed the row."""
    if command == "preview":
        assert outcome.code == 0 and "Describe mean radius" in outcome.stdout, outcome
    else:
        ran(outcome)


def row_at(broken: Broken) -> str:
    """How the messages name the broken row."""
    if broken.name.endswith((".csv", ".tsv")):
        return f"row {broken.row + 1} (line {broken.line})"
    return f"line {broken.line}" if broken.name.endswith(".jsonl") else f"row {broken.row + 1}"


# --- CSV and TSV ---------------------------------------------------------------------------------------------------

CSV_FAMILIES = (
    "valid",
    "not_utf8",
    "ragged_more",
    "ragged_fewer",
    "trailing_separator",
    "open_quote",
    "huge_cell",
    "nonfinite",
    "duplicate_id",
    "missing_column",
    "renamed_column",
    "empty",
    "header_only",
    "random_bytes",
)


def write_csv(header: list[str], rows: list[list[str]], sep: str, newline: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@st.composite
def csv_files(draw: st.DrawFn, family: str) -> Broken:
    suffix = draw(st.sampled_from([".csv", ".tsv"]))
    sep, newline = ("," if suffix == ".csv" else "\t"), draw(st.sampled_from(["\n", "\r\n"]))
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    header, rows = list(HEADER), [list(r) for r in ROWS]
    row = draw(st.integers(0, len(rows) - 1))
    column = draw(st.sampled_from(HEADER))
    j, other = HEADER.index(column), 0
    name = f"data{suffix}"
    if family == "not_utf8":
        rows[row][j] += BAD
    elif family == "ragged_more":
        rows[row] += draw(st.lists(st.sampled_from(["x", "", "0.5"]), min_size=1, max_size=3))
    elif family == "ragged_fewer":
        j = draw(st.integers(1, len(HEADER) - 1))  # the fields kept; 0 would be a blank line, which is skipped
        rows[row], column = rows[row][:j], HEADER[j]
    elif family == "open_quote":
        rows[row][j] = draw(st.sampled_from([BAD + rows[row][j], rows[row][j][:2] + BAD + rows[row][j][2:]]))
    elif family == "huge_cell":
        column = draw(st.sampled_from(["prediction", "label", "split", "input"]))
        size = draw(st.integers(1, 3)) << 20
        rows[row][HEADER.index(column)] = draw(st.sampled_from(["x", "9", "é", " ", "ab "])) * (size // 2)
    elif family == "nonfinite":
        column = draw(st.sampled_from(["prediction", "label"]))
        rows[row][HEADER.index(column)] = draw(st.sampled_from(NONFINITE))
    elif family == "duplicate_id":
        other, row = sorted(draw(st.lists(st.integers(0, len(rows) - 1), min_size=2, max_size=2, unique=True)))
        rows[row][0], column = rows[other][0], "id"
    elif family == "missing_column":
        header.pop(j)
        for r in rows:
            r.pop(j)
    elif family == "renamed_column":
        header[j] = draw(st.text(max_size=30).filter(lambda t: t != column))
    elif family == "header_only":
        rows = []
    elif family == "trailing_separator":  # every data line, not the header: pandas would shift the columns
        rows = [[*r, ""] for r in rows]
    text = write_csv(header, rows, sep, newline)
    content = bom + text.encode().replace(
        BAD.encode(), draw(st.sampled_from(NOT_UTF8)) if family == "not_utf8" else b'"'
    )
    if family == "empty":
        content = draw(st.sampled_from([b"", b"\n", b"\r\n\r\n", b"   \n", bom]))
    elif family == "random_bytes":
        content = draw(st.binary(max_size=4096))
    return Broken(family, name, content, row, column, line=row + 2, first=f"row {other + 1} (line {other + 2})")


def expect_csv(broken: Broken, command: str, outcome: Outcome) -> None:
    event(f"{broken.family} via {command}: exit {outcome.code}")  # --hypothesis-show-statistics
    family, column, at = broken.family, broken.column, row_at(broken)
    unreadable = {
        "not_utf8": (broken.name, f"(line {broken.line},"),
        "ragged_more": (broken.name, f"line {broken.line}," if broken.row else FIRST_LINE_LONGER),
        "trailing_separator": (broken.name, FIRST_LINE_LONGER),
        "empty": (broken.name,),
        "random_bytes": (broken.name,),
        "header_only": (broken.name,),
    }
    if family == "valid":
        ran_valid(command, outcome)
    elif family in unreadable:
        refused(outcome, *unreadable[family])
    elif command == "correct" and (family == "open_quote" or (family, column) == ("huge_cell", "input")):
        ran_or_refused(outcome, broken.name)
    elif command == "correct":
        needles = {
            "ragged_fewer": (at, f"'{column}'", "empty value"),
            "huge_cell": (at, f"'{column}'"),
            "nonfinite": (at, f"'{column}'"),
            "duplicate_id": (at, "duplicate id", f"first seen at {broken.first}"),
            "missing_column": (f"missing column '{column}'",),
            "renamed_column": (f"missing column '{column}'",),
        }[family]
        refused(outcome, broken.name, *needles)
    elif (family, column) in {("missing_column", "input"), ("renamed_column", "input")}:
        refused(outcome, broken.name, "input 'input' is missing")
    else:  # a short row reads as empty cells (as pandas reads it): `correct` refuses them, a prompt gets ""
        ran_or_refused(outcome, broken.name)


@pytest.mark.parametrize("family", CSV_FAMILIES)
@fuzz_settings(6)
@given(data=st.data())
def test_broken_csv_and_tsv(fuzz: Fuzz, family: str, data: st.DataObject) -> None:
    broken, command = data.draw(csv_files(family)), data.draw(st.sampled_from(COMMANDS))
    expect_csv(broken, command, call(fuzz, broken, command))


# --- JSON lines ----------------------------------------------------------------------------------------------------

JSONL_FAMILIES = (
    "valid",
    "cut",
    "not_object",
    "nested",
    "lone_surrogate",
    "deep",
    "nonfinite",
    "duplicate_id",
    "missing_key",
    "not_utf8",
    "random_bytes",
)
NESTED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
).filter(lambda v: isinstance(v, list | dict))


@st.composite
def jsonl_files(draw: st.DrawFn, family: str) -> Broken:
    records: list[dict[str, object]] = [
        {"id": r[0], "input": r[1], "prediction": float(r[2]), "label": int(r[3]), "split": r[4]} for r in ROWS
    ]
    row = draw(st.integers(0, len(records) - 1))
    column = draw(st.sampled_from(HEADER))
    other = 0
    if family == "valid" and draw(st.booleans()):
        records[row]["input"] += " \\ud83d\\ude00"  # a surrogate pair: one character, valid
    elif family == "nested":
        records[row][column] = draw(NESTED)
    elif family == "lone_surrogate":
        records[row]["input"] += BAD
        column = "input"
    elif family == "nonfinite":
        records[row]["prediction"] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        column = "prediction"
    elif family == "duplicate_id":
        other, row = sorted(draw(st.lists(st.integers(0, len(records) - 1), min_size=2, max_size=2, unique=True)))
        records[row]["id"], column = records[other]["id"], "id"
    elif family == "missing_key":
        del records[row][column]
    elif family == "not_utf8":
        records[row]["input"] += BAD
    lines = [json.dumps(r).replace("\\\\ud83d\\\\ude00", "\\ud83d\\ude00") for r in records]
    if family == "cut":
        lines[row] = lines[row][: draw(st.integers(1, len(lines[row]) - 1))]
    elif family == "not_object":
        lines[row] = json.dumps(draw(st.none() | st.booleans() | st.integers() | st.text() | st.lists(st.integers())))
    elif family == "deep":
        lines[row] = "[" * draw(st.integers(10_000, 100_000))
    blanks = draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))  # blank lines are skipped
    text, physical = "", [0]
    for record, blank in zip(lines, blanks, strict=True):
        text += "\n" * blank + record + "\n"
        physical.append(physical[-1] + blank + 1)  # physical[i + 1]: the line row i is on
    bad = draw(st.sampled_from(NOT_UTF8)) if family == "not_utf8" else draw(st.sampled_from([b"\\ud800", b"\\uDC00"]))
    content = text.replace("\n", draw(st.sampled_from(["\n", "\r\n"]))).encode().replace(BAD.encode(), bad)
    if draw(st.booleans()):
        content = b"\xef\xbb\xbf" + content
    if family == "random_bytes":
        content = draw(st.binary(max_size=4096))
    first = f"line {physical[other + 1]}"
    return Broken(family, "data.jsonl", content, row, column, line=physical[row + 1], first=first)


def expect_jsonl(broken: Broken, command: str, outcome: Outcome) -> None:
    event(f"{broken.family} via {command}: exit {outcome.code}")  # --hypothesis-show-statistics
    family, column, at = broken.family, broken.column, row_at(broken)
    unreadable = {
        "cut": (at, "not valid JSON"),
        "not_object": (at, "expected a JSON object"),
        "lone_surrogate": (at, "surrogate"),
        "deep": (at,),
        "not_utf8": (f"(line {broken.line},",),
        "random_bytes": (),
    }
    if family == "valid":
        ran_valid(command, outcome)
    elif family in unreadable:
        refused(outcome, broken.name, *unreadable[family])
    elif command == "correct" and family == "nested" and column in ("id", "input"):
        ran_or_refused(outcome, broken.name)
    elif command == "correct":
        needles = {
            "nested": (at, f"'{column}'"),
            "nonfinite": (at, "'prediction'"),
            "duplicate_id": (at, "duplicate id", f"first seen at {broken.first}"),
            "missing_key": (at, f"'{column}'", "empty value"),
        }[family]
        refused(outcome, broken.name, *needles)
    elif family == "missing_key" and column == "input":
        refused(outcome, broken.name, at, "input 'input' is missing")
    else:
        ran_or_refused(outcome, broken.name)


@pytest.mark.parametrize("family", JSONL_FAMILIES)
@fuzz_settings(5)
@given(data=st.data())
def test_broken_jsonl(fuzz: Fuzz, family: str, data: st.DataObject) -> None:
    broken, command = data.draw(jsonl_files(family)), data.draw(st.sampled_from(COMMANDS))
    expect_jsonl(broken, command, call(fuzz, broken, command))


# --- Parquet -------------------------------------------------------------------------------------------------------

PARQUET_FAMILIES = (
    "valid",
    "list_column",
    "duplicate_column",
    "wrong_type",
    "nonfinite",
    "truncated",
    "flipped",
    "magic_garbage",
    "no_rows",
    "random",
)
WRONG_TYPES = {
    "letters": pa.array(["high"] * len(ROWS)),
    "bools": pa.array([True] * len(ROWS)),
    "bytes": pa.array([b"0.5"] * len(ROWS)),
    "lists": pa.array([[1, 2]] * len(ROWS)),
    "structs": pa.array([{"p": 0.5}] * len(ROWS)),
    "timestamps": pa.array([0] * len(ROWS), pa.timestamp("s")),
    "nulls": pa.nulls(len(ROWS), pa.float64()),
}


def parquet_table() -> pa.Table:
    return pa.table(
        {
            "id": [r[0] for r in ROWS],
            "input": [r[1] for r in ROWS],
            "prediction": [float(r[2]) for r in ROWS],
            "label": [int(r[3]) for r in ROWS],
            "split": [r[4] for r in ROWS],
        }
    )


def parquet_bytes(table: pa.Table, compression: str | None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


@st.composite
def parquet_files(draw: st.DrawFn, family: str) -> Broken:
    table, row, column, valid = parquet_table(), draw(st.integers(0, len(ROWS) - 1)), "prediction", False
    compression = draw(st.sampled_from([None, "snappy", "zstd"]))
    if family == "wrong_type":
        column = draw(st.sampled_from(["prediction", "label", "split"]))
        kind = draw(st.sampled_from(sorted(WRONG_TYPES)))
        table = table.set_column(HEADER.index(column), column, WRONG_TYPES[kind])
        row, valid = 0, (column, kind) == ("label", "bools")  # True/False labels are 1/0
    elif family == "nonfinite":
        values = [float(r[2]) for r in ROWS]
        values[row] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        table = table.set_column(2, "prediction", pa.array(values))
    elif family == "no_rows":
        table = table.slice(0, 0)
    elif family == "duplicate_column":  # Parquet allows it
        column = draw(st.sampled_from(HEADER))
        table = table.append_column(column, WRONG_TYPES[draw(st.sampled_from(sorted(WRONG_TYPES)))])
    elif family == "list_column":  # valid: a column of lists or structs beside the five
        table = table.append_column("features", WRONG_TYPES[draw(st.sampled_from(["lists", "structs"]))])
    content = parquet_bytes(table, compression)
    if family == "truncated":
        content = content[: draw(st.integers(0, len(content) - 1))]
    elif family == "flipped":
        data = bytearray(content)
        for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[at] ^= draw(st.integers(1, 255))
        content = bytes(data)
    elif family == "magic_garbage":
        content = b"PAR1" + draw(st.binary(max_size=2048)) + b"PAR1"
    elif family == "random":
        content = draw(st.binary(max_size=4096))
    return Broken(family, draw(st.sampled_from(["data.parquet", "data.pq"])), content, row, column, valid=valid)


def expect_parquet(broken: Broken, command: str, outcome: Outcome) -> None:
    event(f"{broken.family} via {command}: exit {outcome.code}")  # --hypothesis-show-statistics
    family = broken.family
    if family in ("valid", "list_column"):
        ran_valid(command, outcome)
    elif family in ("truncated", "magic_garbage", "random"):
        refused(outcome, broken.name)
    elif family == "duplicate_column":
        refused(outcome, broken.name, f"two columns are named '{broken.column}'")
    elif family == "no_rows" and command != "preview":
        refused(outcome, broken.name, "no rows")
    elif command == "correct" and family in ("wrong_type", "nonfinite") and not broken.valid:
        refused(outcome, broken.name, row_at(broken), f"'{broken.column}'")
    else:
        ran_or_refused(outcome, broken.name)


@pytest.mark.parametrize("family", PARQUET_FAMILIES)
@fuzz_settings(6)
@given(data=st.data())
def test_broken_parquet(fuzz: Fuzz, family: str, data: st.DataObject) -> None:
    broken, command = data.draw(parquet_files(family)), data.draw(st.sampled_from(COMMANDS))
    expect_parquet(broken, command, call(fuzz, broken, command))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ["data.csv", "data.tsv", "data.jsonl"])
def test_a_byte_order_mark_and_crlf_lines_are_plain_utf8(fuzz: Fuzz, name: str, command: str) -> None:
    """As Excel and PowerShell write files: valid."""
    if name.endswith(".jsonl"):
        text = "".join(json.dumps(dict(zip(HEADER, r, strict=True))) + "\n" for r in ROWS)
    else:
        text = write_csv(list(HEADER), [list(r) for r in ROWS], "," if name.endswith(".csv") else "\t", "\n")
    content = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
    ran_valid(command, call(fuzz, Broken("valid", name, content), command))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["lists", "structs"])
def test_a_parquet_column_of_lists_or_structs_is_valid(fuzz: Fuzz, kind: str, command: str) -> None:
    content = parquet_bytes(parquet_table().append_column("features", WRONG_TYPES[kind]), "snappy")
    ran_valid(command, call(fuzz, Broken("valid", "data.parquet", content), command))


# --- the real process ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "command", "needle"),
    [
        (
            "data.csv",
            write_csv(list(HEADER), [list(r) for r in ROWS], ",", "\n").encode().replace(b"s4", b"s\xff4"),
            "correct",
            "(line 5,",
        ),
        ("data.jsonl", b'{"input": "a"}\n{"input": "\\ud800"}\n', "run", "line 2"),
        ("data.parquet", parquet_bytes(parquet_table(), "snappy")[:-9], "run", "data.parquet"),
    ],
)
def test_the_real_process_refuses_alike(fuzz: Fuzz, name: str, content: bytes, command: str, needle: str) -> None:
    with fuzz.workdir() as workdir:
        (workdir / name).write_bytes(content)
        (workdir / "p.prompty").write_text(PROMPTY)
        args = ["correct", "-p", name, "--yes", "-q"] if command == "correct" else ["run", "p.prompty", "--data", name]
        spawned, called = fuzz.spawn(workdir, *args), fuzz.call(workdir, *args)
    line = refused(spawned, name, needle)
    assert line == refused(called), "the process and the in-process call say the same"
