"""Tables out: a run's output file, written as the run goes and rewritten in input order at its end.

Writing is atomic (a temp file, `.NAME.PID.tmp`, renamed into place; one a killed process left behind is removed the
next time the output is checked, `discard_stale_tmp`); `RowWriter` appends each finished row to a CSV/JSONL output
as a run goes, then rewrites it in input order when the run ends.

A file that cannot be written (disk full, a read-only folder) loses nothing: the rows are in the store. While a run
streams, the file stops growing and one warning says why; a final write that fails leaves the file as it was (its
temp file removed) and raises `OutputError` (one line, exit code 1, naming the fix).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ..errors import OutputError
from .io import SUFFIXES, check_output_path

log = logging.getLogger("llmcorr.data")

WRITE_EVERY_S = 0.1  # a growing output file gets its new lines at most this far apart


def tmp_path(path: Path) -> Path:
    """Where this process writes `path`'s next version before renaming it into place: hidden, beside it, named
    after the process (so a leftover says whose it was)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def discard_stale_tmp(path: str | Path) -> list[Path]:
    """Remove the temp files a killed process left beside `path` mid-rewrite (a live process's are kept); returns
    what it removed."""
    path = Path(path)
    removed = []
    legacy = path.with_name(f".{path.name}.tmp")  # named before temp files carried their process's id
    pattern = f".{glob.escape(path.name)}.*.tmp"
    for tmp in [legacy, *path.parent.glob(pattern)]:
        if tmp != legacy:
            pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
            if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
                continue  # not a temp file of ours, or one a live process is still writing
        try:
            tmp.unlink()
        except OSError:  # gone already, or not ours to remove (permissions): it does no harm where it is
            continue
        removed.append(tmp)
    return removed


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table in the format its extension names, atomically (a temp file renamed into place)."""
    path = check_output_path(path)
    fmt = SUFFIXES[path.suffix.lower()]
    with written_atomically(path) as tmp:
        if fmt in ("csv", "tsv"):
            frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",")
        elif fmt == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temp file to write `path`'s new content to, renamed into place when the block ends; a write that fails
    removes it and raises `OutputError`, `path` as it was."""
    tmp = tmp_path(path)
    try:
        yield tmp
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(path, exc.strerror or type(exc).__name__) from None


def _cell(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


class RowWriter:
    """Write a run's rows to `path` as they finish, then the whole table in input order at the end.

    CSV/TSV/JSONL outputs grow a line per finished row (completion order, with a `row` column; appended at most
    WRITE_EVERY_S apart, whole lines only), so a long run can be watched — and a crash loses nothing the store does not
    also hold. Parquet cannot be appended to: it is written
    once, at the end. `finish(table)` replaces the file atomically with the ordered table.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = check_output_path(path) if path is not None else None
        self.fmt = SUFFIXES[self.path.suffix.lower()] if self.path is not None else None
        self._fh: IO[str] | None = None
        self._buf = io.StringIO()  # whole lines waiting to be written: the file only ever gets complete lines
        self._csv: Any = None
        self._fields: list[str] | None = None
        self._flushed = 0.0
        self.failed: str | None = None  # why the streamed file stopped growing, if it did

    def write(self, index: int, record: dict[str, Any]) -> None:
        if self.path is None or self.fmt == "parquet":
            return
        record = {"row": index + 1, **{k: _cell(v) for k, v in record.items()}}
        if self.fmt == "jsonl":
            self._buf.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        else:
            if self._csv is None:
                self._fields = list(record)
                self._csv = csv.DictWriter(
                    self._buf, self._fields, delimiter="\t" if self.fmt == "tsv" else ",", extrasaction="ignore"
                )
                self._csv.writeheader()
            self._csv.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in record.items()})
        if time.monotonic() - self._flushed >= WRITE_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Append the lines written since the last flush to the file (one write for all of them)."""
        if self.path is None or not self._buf.tell():
            return
        if self.failed is None:
            try:
                if self._fh is None:
                    self._fh = self.path.open("w", encoding="utf-8", newline="")
                self._fh.write(self._buf.getvalue())
                self._fh.flush()
            except OSError as exc:  # the store has the rows: the run goes on, the file waits for the final write
                self.failed = exc.strerror or type(exc).__name__
                log.warning(
                    "%s could not be written (%s): it stops growing; the rows are in the store", self.path, self.failed
                )
                self._discard()
        self._buf.seek(0)
        self._buf.truncate()
        self._flushed = time.monotonic()

    def _discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:  # buffered lines the disk refused: the final write says so if it fails too
                self.failed = exc.strerror or type(exc).__name__
            self._fh = None

    def finish(self, table: pd.DataFrame) -> Path | None:
        self.close()
        return write_table(table, self.path) if self.path is not None else None

    def finish_rows(self, records: Iterable[dict[str, Any]], columns: list[str]) -> Path | None:
        """Replace the file with `records` (in input order), streamed: CSV/TSV/JSONL never hold the table in
        memory; Parquet is built in memory, then written."""
        self.close()
        if self.path is None:
            for _ in records:
                pass
            return None
        if self.fmt == "parquet":  # nested values as JSON text, as in CSV: a column may mix them with strings
            rows = [{c: _csv_cell(r.get(c)) for c in columns} for r in records]
            return write_table(pd.DataFrame.from_records(rows, columns=columns), self.path)
        with written_atomically(self.path) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
            if self.fmt == "jsonl":
                for record in records:
                    fh.write(json.dumps({k: _cell(v) for k, v in record.items()}, ensure_ascii=False, default=str))
                    fh.write("\n")
            else:
                out = csv.writer(fh, delimiter="\t" if self.fmt == "tsv" else ",", lineterminator="\n")
                out.writerow(columns)
                for record in records:
                    out.writerow([_csv_cell(record.get(c)) for c in columns])
        return self.path


def _csv_cell(value: Any) -> Any:
    value = _cell(value)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
