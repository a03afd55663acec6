"""Tables read row by row, so a run over a large file holds only the rows it is working on.

`open_table(data)` reads the whole source once to check it (every row parses; its columns and row count), keeping
nothing of it but the columns, the count and (JSONL) each row's line number; iterating the `Table` then reads it again
in chunks of CHUNK_ROWS. Cells come as plain Python values; an empty JSON/Parquet cell or a NaN is None, a CSV cell is
always a string (an empty one stays ""). Every problem is one `DataError` line naming the file and the row; a table
wider than `max_columns()` (data/io.py) is refused before it is parsed.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError
from .io import (
    SUFFIXES,
    check_header_width,
    check_no_implicit_index,
    check_unique_columns,
    check_width,
    jsonl_row,
    read_errors,
)

CHUNK_ROWS = 4096


class Table:
    """A table checked once and then streamed: `columns`, `rows`, `where(i)` (row i the way the user finds it),
    iteration (dicts of cells by column), and `frame()` for whoever wants it all in memory."""

    def __init__(
        self,
        source: str,
        columns: list[str],
        rows: int,
        *,
        path: Path | None = None,
        fmt: str | None = None,
        frame: pd.DataFrame | None = None,
        lines: array[int] | None = None,
    ) -> None:
        self.source = source
        self.columns = columns
        self.rows = rows
        self.path = path
        self.fmt = fmt
        self._frame = frame
        self._lines = lines

    def where(self, i: int) -> str:
        if self.fmt in ("csv", "tsv"):
            return f"row {i + 1} (line {i + 2})"
        if self.fmt == "jsonl" and self._lines is not None:
            return f"line {self._lines[i]}"
        return f"row {i + 1}"

    def head(self, limit: int | None) -> Table:
        """The first `limit` rows (all of them for None)."""
        if limit is None or limit >= self.rows:
            return self
        frame = self._frame.head(limit) if self._frame is not None else None
        return Table(
            self.source, self.columns, max(0, limit), path=self.path, fmt=self.fmt, frame=frame, lines=self._lines
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return islice(self._cells(), self.rows)

    def _cells(self) -> Iterator[dict[str, Any]]:
        if self._frame is not None:
            for start in range(0, len(self._frame), CHUNK_ROWS):
                for record in self._frame.iloc[start : start + CHUNK_ROWS].to_dict("records"):
                    yield {str(k): v for k, v in record.items()}
            return
        assert self.path is not None
        if self.fmt in ("csv", "tsv"):
            with _csv_chunks(self.path, self.fmt) as chunks:
                for chunk in chunks:
                    yield from chunk.to_dict("records")
        elif self.fmt == "jsonl":
            with self.path.open("r", encoding="utf-8-sig") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
        else:
            import pyarrow.parquet as pq

            with pq.ParquetFile(self.path) as pf:
                for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
                    yield from batch.to_pylist()

    def frame(self) -> pd.DataFrame:
        """All of it as a DataFrame (memory grows with the table)."""
        if self._frame is not None:
            return self._frame
        return pd.DataFrame.from_records(list(self), columns=self.columns)


@contextmanager
def _csv_chunks(path: Path, fmt: str) -> Iterator[Any]:
    with pd.read_csv(
        path,
        sep="\t" if fmt == "tsv" else ",",
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        chunksize=CHUNK_ROWS,
    ) as reader:
        yield reader


def _check_jsonl(path: Path) -> tuple[list[str], int, array[int]]:
    columns: dict[str, None] = {}
    lines: array[int] = array("q")
    with path.open("r", encoding="utf-8-sig") as fh:  # -sig: a leading byte-order mark is not part of line 1
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            for key in jsonl_row(path, lineno, line):
                columns.setdefault(str(key), None)
            check_width(path, len(columns), f"line {lineno}")
            lines.append(lineno)
    return list(columns), len(lines), lines


def _check_file(path: Path, fmt: str) -> Table:
    source = str(path)
    if fmt in ("csv", "tsv"):
        check_header_width(path, fmt)  # before pandas: every column costs it time and memory
        rows, columns = 0, list[str]()
        with _csv_chunks(path, fmt) as chunks:
            for chunk in chunks:
                check_no_implicit_index(path, fmt, chunk)
                columns = columns or list(map(str, chunk.columns))
                rows += len(chunk)
        if not columns:  # a header and no rows: pandas yields no chunk
            columns = list(map(str, pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", nrows=0).columns))
        return Table(source, columns, rows, path=path, fmt=fmt)
    if fmt == "jsonl":
        columns, rows, lines = _check_jsonl(path)
        return Table(source, columns, rows, path=path, fmt=fmt, lines=lines)
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        check_width(path, len(pf.schema_arrow.names))
        for _ in pf.iter_batches(batch_size=CHUNK_ROWS):  # every page decodes: a corrupt one fails now
            pass
        check_unique_columns(path, list(pf.schema_arrow.names))
        return Table(source, list(pf.schema_arrow.names), pf.metadata.num_rows, path=path, fmt=fmt)


def open_table(data: str | Path | Any) -> Table:
    """A table from a file path (.csv/.tsv/.jsonl/.parquet) or a DataFrame-like object (pandas, or anything with
    `to_pandas()`: polars, Arrow), checked through."""
    if isinstance(data, str | Path):
        path = Path(data)
        fmt = SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise DataError(f"{path}: unknown file type {path.suffix!r} (expected .csv, .tsv, .jsonl or .parquet)")
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        with read_errors(path, fmt):
            table = _check_file(path, fmt)
        table.source = str(data)
        return table
    if not isinstance(data, pd.DataFrame) and callable(getattr(data, "to_pandas", None)):
        data = data.to_pandas()  # polars, pyarrow
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data: expected a file path or a DataFrame, got {type(data).__name__}")
    check_width("DataFrame", len(data.columns))
    frame = data.reset_index(drop=True)
    return Table("DataFrame", list(map(str, frame.columns)), len(frame), frame=frame)
