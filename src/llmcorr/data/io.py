"""Tables in and out: CSV/TSV, JSONL and Parquet files, pandas DataFrames (and anything with `to_pandas()`, such as
a polars DataFrame or an Arrow table).

Reading names the row the way the user finds it (`row 3 (line 4)`, `line 7`); every problem is one `DataError` line.
A table has at most `max_columns()` columns (LLMCORR_MAX_COLUMNS, default 10,000): a wider one is one line, before
it is parsed. Writing tables: data/output.py.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, DataError, UserError

log = logging.getLogger("llmcorr.data")
Where = Callable[[int], str]
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


MAX_COLUMNS = 10_000  # a table's columns, unless LLMCORR_MAX_COLUMNS says otherwise: 100k columns took 41 s and 686 MB


def max_columns() -> int:
    """How many columns a table may have: LLMCORR_MAX_COLUMNS, else MAX_COLUMNS."""
    raw = os.environ.get("LLMCORR_MAX_COLUMNS", "").strip()
    if not raw:
        return MAX_COLUMNS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"LLMCORR_MAX_COLUMNS={raw!r}: expected a whole number of columns (at least 1)")
    return int(raw)


def check_width(source: object, columns: int, where: str = "") -> None:
    """One line for a table wider than `max_columns()`; `where`: the row that made it so (JSONL), if any."""
    limit = max_columns()
    if columns > limit:
        at = f"{where}: " if where else ""
        raise DataError(
            f"{source}: {at}{columns:,} columns, more than the {limit:,} a table may have "
            "(set LLMCORR_MAX_COLUMNS to allow more)"
        )


def check_header_width(path: Path, fmt: str) -> None:
    """A CSV/TSV's header, counted before pandas parses the file (which costs time and memory with every column).
    A header the csv module cannot read is left to pandas, which says what is wrong with it."""
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        try:
            header = next(csv.reader(fh, delimiter="\t" if fmt == "tsv" else ","), [])
        except csv.Error:
            return
    check_width(path, len(header))


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # a \ud800-\udfff escape: half of a pair, or a lone one


def jsonl_row(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """One JSONL line as a row; anything else is one `DataError` line naming it."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: line {lineno}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
    if _SURROGATE.search(line):  # a pair decodes to one character; a lone half cannot be sent, stored or counted
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{path}: line {lineno}: a \\u escape is half of a UTF-16 surrogate pair") from None
    return obj


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    columns: set[str] = set()
    with path.open("r", encoding="utf-8-sig") as fh:  # -sig: a leading byte-order mark is not part of line 1
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                records.append(jsonl_row(path, lineno, line))
                lines.append(lineno)
                columns.update(map(str, records[-1]))
                check_width(path, len(columns), f"line {lineno}")
    return pd.DataFrame.from_records(records), lines


def read_table(path: Path) -> tuple[pd.DataFrame, Where]:
    """Read a file and return it with a function that names row i (0-based) the way the user can find it."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r} (expected .csv, .tsv, .jsonl or .parquet)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with read_errors(path, fmt):
        if fmt in ("csv", "tsv"):
            check_header_width(path, fmt)
            frame = pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8"
            )
            check_no_implicit_index(path, fmt, frame)
            return frame, lambda i: f"row {i + 1} (line {i + 2})"
        if fmt == "jsonl":
            frame, lines = _read_jsonl(path)
            return frame, lambda i: f"line {lines[i]}"
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        check_width(path, len(names))
        check_unique_columns(path, names)
        frame = pd.read_parquet(path)
        return frame, lambda i: f"row {i + 1}"


def check_unique_columns(path: Path, names: list[str]) -> None:
    """Parquet lets two columns share a name; a row (a dict of cells by column) cannot hold both."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: two columns are named {show(name)}")
        seen.add(name)


def check_no_implicit_index(path: Path, fmt: str, frame: pd.DataFrame) -> None:
    """pandas reads a first data line with k fields more than the header as "the first k columns are the index" and
    shifts every column by k (a separator at the end of each data line does it): refuse it instead."""
    if not isinstance(frame.index, pd.RangeIndex):
        raise DataError(
            f"{path}: cannot parse {fmt.upper()}: the first data line has more fields than the header's "
            f"{len(frame.columns)} (a separator at the end of the line?)"
        )


@contextmanager
def read_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn what pandas, pyarrow and the codecs raise on a bad file into one `DataError` line."""
    try:
        yield
    except UserError:  # ours already: one line
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text{_first_non_utf8(path, fmt)}: save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "malformed"
        raise DataError(f"{path}: cannot parse {fmt.upper()}: {detail}") from None
    except (OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {fmt}: {detail}") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt Parquet
        raise DataError(f"{path}: cannot read as {fmt}: {type(exc).__name__}: {str(exc)[:160]}") from None


def _first_non_utf8(path: Path, fmt: str) -> str:
    """` (line N, byte B)` of a text file's first byte that is not UTF-8. The codec's own offset counts from the
    start of the block it was given, not of the file; a newline never falls inside a UTF-8 sequence, so line by
    line finds it exactly."""
    if fmt == "parquet":
        return ""
    offset = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f" (line {lineno}, byte {offset + exc.start})"
            offset += len(line)
    return ""


def show(value: object, limit: int = 80) -> str:
    """A value quoted in an error message: its repr (one line), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def show_names(names: Iterable[object], limit: int = 12) -> str:
    """Column names listed in an error message: bare when plain, quoted when not (a comma, a newline, a byte-order
    mark), each short, at most `limit` of them."""
    shown: list[str] = []
    for i, name in enumerate(names):
        if i == limit:
            shown.append("…")
            break
        text = str(name)
        plain = text.isprintable() and "," not in text and 0 < len(text) <= 40 and text.strip() == text
        shown.append(text if plain else show(text, 40))
    return ", ".join(shown) or "none"


def check_output_path(path: str | Path) -> Path:
    """Fail early (before any token is spent) on an output path we cannot write."""
    path = Path(path)
    if SUFFIXES.get(path.suffix.lower()) is None:
        raise DataError(f"{path}: unknown output type {path.suffix!r} (expected .csv, .tsv, .jsonl or .parquet)")
    if path.parent and not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    return path


def as_frame(data: str | Path | Any) -> tuple[pd.DataFrame, Where, str]:
    """A table from a file path or a DataFrame-like object: (frame, how to name row i, where it came from)."""
    if isinstance(data, str | Path):
        frame, where = read_table(Path(data))
        return frame, where, str(data)
    if not isinstance(data, pd.DataFrame) and callable(getattr(data, "to_pandas", None)):
        data = data.to_pandas()  # polars, pyarrow
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data: expected a file path or a DataFrame, got {type(data).__name__}")
    check_width("DataFrame", len(data.columns))
    return data.reset_index(drop=True), (lambda i: f"row {i + 1}"), "DataFrame"
