"""The response cache in the store: answers by request key, committed with the rows made from them, which reference
the cached text rather than keep a copy (`shared_or_own`; store/row_writes.py)."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import replace
from typing import Any

from ..errors import StoreError
from . import row_writes
from .db import Connection
from .failures import writes
from .records import RowRecord, utc_now

CACHE_BUFFER = 1024  # answers held for the next commit at most
COLUMNS = ("key", "model", "response", "input_tokens", "output_tokens", "created_utc")  # a waiting answer's values


class CacheStore:
    """The response-cache part of `Store` (store/runs.py): answers wait in memory for the next commit of rows."""

    conn: Connection
    path: Any  # the store's location, for its errors
    _cache_pending: dict[str, tuple[Any, ...]]  # answers waiting for the next commit, by key
    _cache_hits: Counter[str]

    def cached_response(self, keys: list[str]) -> tuple[str, str] | None:
        """(key, response) of the first of `keys` the cache holds (answers not yet committed included); counts the
        hit."""
        for key in keys:
            pending = self._cache_pending.get(key)
            if pending is not None:
                self._cache_hits[key] += 1
                return key, pending[2]
            row = self.conn.execute("SELECT response FROM cache WHERE key = {?}", (key,)).fetchone()
            if row is not None:
                self._cache_hits[key] += 1
                return key, row["response"]
        return None

    def cache_put(self, key: str, model: str, response: str, input_tokens: int, output_tokens: int) -> None:
        """Remember an answer (first writer wins: the same key always means the same request). It is committed with
        the next rows (`add_rows`), so a row and the answers it was made from reach the store together."""
        self._cache_pending.setdefault(key, (key, model, response, input_tokens, output_tokens, utc_now()))
        if len(self._cache_pending) >= CACHE_BUFFER:
            self.flush_cache()

    @writes
    def flush_cache(self) -> None:
        """Commit the answers and hit counts not yet written."""
        if self._cache_pending or self._cache_hits:
            with self.conn.writing():
                self._write_cache()
            self._cache_written()

    def salvage_cache(self) -> None:
        """After a failed batch: the cache's waiting answers one by one, dropping any the store refuses."""
        pending, hits = self._cache_pending, self._cache_hits
        try:
            for waiting in [{}, *({k: v} for k, v in pending.items())]:
                self._cache_pending, self._cache_hits = waiting, hits if not waiting else Counter()
                with contextlib.suppress(*row_writes.unstorable()):
                    self.flush_cache()
        except StoreError:  # a full disk: every answer waits for the next commit that can be made
            self._cache_pending, self._cache_hits = pending, Counter()
            raise
        self._cache_pending, self._cache_hits = {}, Counter()

    def drop_pending_cache(self) -> int:
        """Forget the answers waiting for a commit (a store that cannot take them may still take a run's status);
        how many were dropped."""
        dropped = len(self._cache_pending)
        self._cache_pending, self._cache_hits = {}, Counter()
        return dropped

    def shared_or_own(self, row: RowRecord) -> RowRecord:
        """`row` referencing the cached answer it was made from, if the cache holds that very text (two requests
        with one key may have had different answers: the first is cached); else keeping its own text."""
        if row.response_key is None or not isinstance(row.response, str):
            return row
        same = self.conn.execute(
            "SELECT 1 FROM cache WHERE key = {?} AND response = {?}", (row.response_key, row.response)
        ).fetchone()
        return row if same is not None else replace(row, response_key=None)

    def _write_cache(self) -> None:
        """Write the waiting answers and hits in the caller's transaction; they wait on until it commits (a full disk
        leaves them for the next commit that can be made: `_cache_written`)."""
        pending, hits = self._cache_pending, self._cache_hits
        if pending:
            insert = self.conn.dialect.insert_ignore("cache", COLUMNS)  # first writer wins (`cache_put`)
            self.conn.executemany(insert, list(pending.values()))
        if hits:
            self.conn.executemany(
                "UPDATE cache SET hits = hits + {?} WHERE key = {?}", [(n, k) for k, n in hits.items()]
            )

    def _cache_written(self) -> None:
        """The transaction that wrote the waiting answers committed."""
        self._cache_pending, self._cache_hits = {}, Counter()
