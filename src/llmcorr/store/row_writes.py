"""How a finished row becomes a `rows` record, and what is kept of a row the store cannot take.

A batch of rows is committed in one transaction (store/runs.py `add_rows`). A value the database cannot hold — an
integer past 64 bits, a string with a lone surrogate, an output that is not JSON — fails the whole transaction; the
batch is then committed row by row, and a row that still fails is kept as an `error` row saying why, with as much
of it as the store can take (`kept_as_error`): one bad answer costs its own row, never the rows committed with it.

An answer is stored once. A row made from a cached answer keeps the cache's key in `response_key` and no text of its
own (`response` NULL): every run, rerun and resume made from the same answer shares the cache's one copy. A row whose
output is just its response (a prompt run's `{"output": answer}`) keeps `SAME_AS_RESPONSE` in `output_json`.
`columns_read` and `decoded` give readers the full response and output back, in a `RowRecord`; SQL readers of the
file get the same from the `rows_with_response` view (migrations.py m006).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

from .dialect import insert
from .records import RowRecord

COLUMNS = (  # what `row_values` gives, in its order
    "run_id", "row_index", "sample_id", "inputs_json", "prompt_json", "response", "response_key", "output_json",
    "status", "error", "input_tokens", "output_tokens", "duration_ms", "attempts", "endpoint", "cached", "created_utc",
)  # fmt: skip
INSERT_ROW = insert("rows", COLUMNS)
# A row's full response: its own text, else the cached answer it references
FULL_RESPONSE = "COALESCE(response, (SELECT c.response FROM cache c WHERE c.key = rows.response_key))"
SAME_AS_RESPONSE = "=response"  # output_json (a JSON string, never an output: those are objects) of such a row
_RESPONSE = "_response_for_output"  # the response, read along with output_json where the output is the response
_FULL = "_full_response"  # the response wherever its text is kept (FULL_RESPONSE)
_FIELDS = frozenset(f.name for f in fields(RowRecord))  # what a read hands out (not run_id, not created_utc)
_COUNTS = ("input_tokens", "output_tokens", "attempts")  # nullable columns, integers in a RowRecord
_COUNT_MAX = 2**31 - 1  # a kept error row's token counts: past this, a count is no count (and sums would overflow)


def row_values(run_id: str, row: RowRecord, now: str) -> tuple[Any, ...]:
    """The row's INSERT_ROW parameters (raises TypeError/ValueError for an output that is not JSON). A row with a
    `response_key` (one the cache holds with the same text: store/cache.py `shared_or_own`) keeps no text."""
    shared = row.response_key is not None and isinstance(row.response, str)
    return (
        run_id,
        row.row_index,
        row.sample_id,
        json.dumps(row.inputs, default=str),
        json.dumps(row.prompt) if row.prompt is not None else None,
        None if shared else row.response,
        row.response_key if shared else None,
        _output_json(row),
        row.status,
        row.error,
        row.input_tokens,
        row.output_tokens,
        row.duration_ms,
        row.attempts,
        row.endpoint,
        int(row.cached),
        now,
    )


def _output_json(row: RowRecord) -> str | None:
    if row.output is None:
        return None
    if isinstance(row.response, str) and row.output == {"output": row.response}:
        return json.dumps(SAME_AS_RESPONSE)  # the answer is the response column's: not stored twice
    return json.dumps(row.output)


def columns_read(columns: str) -> str:
    """The SQL column list to read for `columns`: `response` is the full response (FULL_RESPONSE), and output_json
    brings it along where the output is the response (SAME_AS_RESPONSE)."""
    names = {c.strip() for c in columns.split(",")}
    extra = []
    if "*" in names or "response" in names:
        extra.append(f"{FULL_RESPONSE} AS {_FULL}")
    if "output_json" in names:
        same = json.dumps(SAME_AS_RESPONSE)
        extra.append(f"CASE WHEN output_json = '{same}' THEN {FULL_RESPONSE} END AS {_RESPONSE}")
    return ", ".join([columns, *extra])


def decoded(values: dict[str, Any]) -> RowRecord:
    """A `rows` record (the columns `columns_read` asked for) as the store hands it out, a `RowRecord`: JSON columns
    decoded (`inputs`, `prompt`, `output`), `response` the full response wherever its text is kept, `cached` a bool,
    a NULL count 0. Columns not read keep RowRecord's defaults; `run_id` and `created_utc` are not handed out.
    `values` (a fresh dict of the record) is used up."""
    if _FULL in values:
        values["response"] = values.pop(_FULL)
    response = values.pop(_RESPONSE, values.get("response"))
    for col in ("inputs_json", "prompt_json", "output_json"):
        if col in values:
            raw = values.pop(col)
            values[col.removesuffix("_json")] = json.loads(raw) if raw is not None else None
    if values.get("output") == SAME_AS_RESPONSE:
        values["output"] = {"output": response}
    if "inputs" in values and values["inputs"] is None:
        values["inputs"] = {}
    if "cached" in values:
        values["cached"] = bool(values["cached"])
    for count in _COUNTS:
        if count in values and values[count] is None:  # older rows may hold no count
            values[count] = 0
    return RowRecord(**{name: value for name, value in values.items() if name in _FIELDS})


def unstorable() -> tuple[type[BaseException], ...]:
    """The errors that mean "a value the store cannot take" (not a broken or full disk): binding, overflow, JSON."""
    errors: tuple[type[BaseException], ...] = (
        OverflowError,  # "Python int too large to convert to SQLite INTEGER"
        TypeError,  # an output json.dumps cannot write, a token count that is not a number
        ValueError,  # a lone surrogate (UnicodeEncodeError), a circular output
        sqlite3.DataError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,  # "Error binding parameter 6: type 'list' is not supported"
    )
    psycopg = sys.modules.get("psycopg")  # loaded only when the store is PostgreSQL
    if psycopg is not None:
        errors += (psycopg.DataError, psycopg.errors.NumericValueOutOfRange)
    return errors


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _COUNT_MAX else 0


def kept_as_error(row: RowRecord, exc: BaseException) -> Iterator[RowRecord]:
    """`row` as an error row saying why the store refused it, most kept first: its answer, then without the answer
    and prompt, then only its index."""
    detail = " ".join(str(exc).split())[:160]
    reason = f"the store could not keep this row's answer ({type(exc).__name__}: {detail})"
    duration = row.duration_ms if isinstance(row.duration_ms, int | float) else None
    error = replace(
        row,
        status="error",
        error=reason,
        output=None,
        input_tokens=_count(row.input_tokens),
        output_tokens=_count(row.output_tokens),
        duration_ms=duration,
        attempts=_count(row.attempts),
        response=row.response if isinstance(row.response, str) else None,
        endpoint=row.endpoint if isinstance(row.endpoint, str) else None,
    )
    yield error
    yield replace(error, response=None, prompt=None)
    yield replace(error, response=None, prompt=None, inputs={}, sample_id=None, endpoint=None)
