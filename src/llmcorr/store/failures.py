"""When the store cannot be written: a full disk, an I/O error, a file-size limit — on SQLite or PostgreSQL.

The database's own error (`sqlite3.OperationalError: database or disk is full`, `disk I/O error`, psycopg's
`DiskFull`) is translated into `StoreError` where the store writes (`@writes`), so the engine can mark the run
failed with the rows it kept and the CLI can say so in one line (exit code 1) instead of a traceback. Other
database errors (a value the store cannot take: row_writes.py; a locked database) are not this and pass through.
"""

from __future__ import annotations

import functools
import resource
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from ..errors import StoreError

P = ParamSpec("P")
T = TypeVar("T")

_POSTGRES = {  # SQLSTATE → reason (class 53: insufficient resources; 58030: I/O error)
    "53100": "disk full",
    "53200": "out of memory",
    "58030": "I/O error",
}


def _fsize_limited() -> bool:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return soft != resource.RLIM_INFINITY


def storage_failure(exc: BaseException) -> str | None:
    """Why `exc` means the store could not be written ("disk full", "I/O error", ...), or None when it does not."""
    if isinstance(exc, sqlite3.OperationalError):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name == "SQLITE_FULL" or "disk is full" in str(exc):
            return "disk full"
        if name.startswith("SQLITE_IOERR") or "disk I/O error" in str(exc):
            # a write past `ulimit -f` (RLIMIT_FSIZE) fails with EFBIG, which SQLite reports as an I/O error
            return "file-size limit reached, ulimit -f" if _fsize_limited() else "I/O error"
        return None
    psycopg = sys.modules.get("psycopg")  # loaded only when the store is PostgreSQL
    if psycopg is not None and isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None) or ""
        return _POSTGRES.get(state) or ("insufficient resources" if state.startswith("53") else None)
    return None


class _Located(Protocol):
    path: Any


S = TypeVar("S", bound=_Located)


def writes(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """A store method that writes: a full disk or an I/O error in it becomes `StoreError` naming the store."""

    @functools.wraps(method)
    def translated(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            reason = storage_failure(exc)
            if reason is None:
                raise
            raise StoreError(self.path, reason) from exc

    return translated
