"""What a user changes about a run after it started: its name, tags, archive flag, a cancel request, its output
file, its removal. Each is one short write (`@writes`: a full disk is one `StoreError` line, never a traceback).

The output file is claimed, not just recorded: `set_output_path` checks under the store's write lock that no other
running run writes the same file (`same_file`: through links and `..` too) and records it in the same transaction,
so of two runs started at once with one `--output`, the second is refused (exit 2) however close together they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError, NotFoundError, UserError
from .db import Connection, IntegrityError
from .failures import writes


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two names reach one file: by identity (device and inode) where both exist, else by resolved path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


class RunEdits:
    """The run-editing part of `Store` (store/runs.py)."""

    conn: Connection
    path: Any  # the store's location, for its errors

    @writes
    def request_cancel(self, run_id: str) -> None:
        """Ask a running run (in any process) to stop cleanly; it notices within about a second."""
        self.conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = {?} AND status = 'running'", (run_id,))

    @writes
    def rename_run(self, run_id: str, name: str | None) -> None:
        """Give a run a new name (None removes it); names are unique."""
        if name is not None and not name.strip():
            raise UserError("a run's name cannot be empty")
        try:
            self.conn.execute("UPDATE runs SET name = {?} WHERE id = {?}", (name, run_id))
        except IntegrityError:
            raise UserError(f"a run named {name!r} already exists; choose another name") from None

    @writes
    def tag_run(self, run_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove tags; returns the run's tags, sorted."""
        add, remove = list(add), list(remove)
        for tag in add:
            if not tag.strip() or "," in tag:
                raise UserError(f"tag {tag!r}: a tag is a non-empty word without commas")
        with self.conn.writing():
            row = self.conn.execute("SELECT tags_json FROM runs WHERE id = {?}", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no run with id {run_id!r}")
            tags = sorted((set(json.loads(row["tags_json"])) | {t.strip() for t in add}) - set(remove))
            self.conn.execute("UPDATE runs SET tags_json = {?} WHERE id = {?}", (json.dumps(tags), run_id))
        return tags

    @writes
    def set_archived(self, run_id: str, archived: bool) -> None:
        self.conn.execute("UPDATE runs SET archived = {?} WHERE id = {?}", (int(archived), run_id))

    @writes
    def set_output_path(self, run_id: str, path: str | Path | None) -> None:
        """Record (claim) the run's output file: `DataError` if another running run is writing it (module
        docstring)."""
        resolved = str(Path(path).resolve()) if path else None
        with self.conn.writing():
            writer = self.live_writer(resolved, but=run_id) if resolved is not None else None
            if writer is not None:
                label = writer["name"] or writer["id"]
                raise DataError(
                    f"--output {path}: run {label} (pid {writer['pid']} on {writer['host']}) is writing that file now;"
                    f" choose another output file, or wait for it to end (`llmcorr runs cancel {label}` stops it)"
                )
            self.conn.execute("UPDATE runs SET output_path = {?} WHERE id = {?}", (resolved, run_id))

    def live_writer(self, output: str | Path, but: str | None = None) -> dict[str, Any] | None:
        """The running run (id, name, pid, host) other than `but` whose recorded output is `output`, if any."""
        running = self.conn.execute(
            "SELECT id, name, pid, host, output_path FROM runs WHERE status = 'running' AND output_path IS NOT NULL"
        ).fetchall()
        for row in running:
            if row["id"] != but and same_file(row["output_path"], output):
                return {k: row[k] for k in ("id", "name", "pid", "host")}
        return None

    def runs_with_output(self, path: str | Path) -> list[str]:
        """The ids of the runs that recorded `path` as their output file."""
        resolved = str(Path(path).resolve())
        return [r["id"] for r in self.conn.execute("SELECT id FROM runs WHERE output_path = {?}", (resolved,))]

    @writes
    def delete_run(self, run_id: str) -> None:
        """Remove a run and (by cascade) its rows and spans. Its output file, if any, is the caller's to remove."""
        self.conn.execute("DELETE FROM runs WHERE id = {?}", (run_id,))
