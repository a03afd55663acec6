"""The response cache in the store: answers by request key, committed with the rows made from them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .db import Connection
from .records import utc_now

CACHE_BUFFER = 1024  # answers held for the next commit at most


class CacheStore:
    """The response-cache part of `Store` (store/runs.py): answers wait in memory for the next commit of rows."""

    conn: Connection
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
            row = self.conn.execute("SELECT response FROM cache WHERE key = ?", (key,)).fetchone()
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

    def flush_cache(self) -> None:
        """Commit the answers and hit counts not yet written."""
        if self._cache_pending or self._cache_hits:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                self._write_cache()

    def _write_cache(self) -> None:
        pending, self._cache_pending = self._cache_pending, {}
        hits, self._cache_hits = self._cache_hits, Counter()
        if pending:
            self.conn.executemany(
                "INSERT OR IGNORE INTO cache (key, model, response, input_tokens, output_tokens, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                list(pending.values()),
            )
        if hits:
            self.conn.executemany("UPDATE cache SET hits = hits + ? WHERE key = ?", [(n, k) for k, n in hits.items()])
