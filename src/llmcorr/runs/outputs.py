"""Where a run may write its output file, checked before anything is recorded or spent (run, correct, resume,
rerun, and the dashboard's runs, which go through the same commands).

    check_output(output, reads, store)   one line (exit 2) for an output that is a file the run reads (its data,
                                         prompt file, flow source, template, the store), or that another live run is
                                         writing; then the leftovers of an atomic rewrite a killed process left
                                         beside it are removed

"The same file" is the same file however it is named: through a symbolic link, a hard link or `..`
(`os.path.samefile` where both exist, resolved paths otherwise). Another run is writing the file when the store has
it `running` with that output: opening the store has already marked a run whose process died as `interrupted`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import check_output_path
from ..data.io import discard_stale_tmp
from ..errors import DataError
from ..store import Store


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two names reach one file: by identity (device and inode) where both exist, else by resolved path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def source_file(target: Any) -> str | None:
    """The file that defines a Python flow (a function, or a class instance), if it has one."""
    obj = target if inspect.isfunction(target) or inspect.ismethod(target) else type(target)
    try:
        return inspect.getsourcefile(obj)
    except (OSError, TypeError):
        return None


def _store_files(store: Store) -> dict[str, Path]:
    if not isinstance(store.path, Path):  # a PostgreSQL store has no file here
        return {}
    return {"store": store.path, "store's log": Path(f"{store.path}-wal"), "store's index": Path(f"{store.path}-shm")}


def live_writer(store: Store, output: str | Path) -> dict[str, Any] | None:
    """The running run (id, name, pid, host) whose recorded output is `output`, if there is one."""
    running = store.conn.execute(
        "SELECT id, name, pid, host, output_path FROM runs WHERE status = 'running' AND output_path IS NOT NULL"
    ).fetchall()
    for row in running:
        if same_file(row["output_path"], output):
            return {k: row[k] for k in ("id", "name", "pid", "host")}
    return None


def check_output(output: str | Path, reads: Mapping[str, str | Path | None], store: Store) -> Path:
    """`output` checked for a run that reads the files in `reads` ({what: path}; None: no file) and records into
    `store`; one `DataError` line if the run must not write it."""
    path = check_output_path(output)
    files: dict[str, str | Path | None] = {**reads, **_store_files(store)}
    for what, read in files.items():
        if read is not None and Path(read).exists() and same_file(path, read):
            shown = Path(read).expanduser().resolve()
            raise DataError(
                f"--output {output}: that is the run's {what} ({shown}); the run would overwrite what it reads: "
                "choose another output file"
            )
    writer = live_writer(store, path)
    if writer is not None:
        label = writer["name"] or writer["id"]
        raise DataError(
            f"--output {output}: run {label} (pid {writer['pid']} on {writer['host']}) is writing that file now; "
            f"choose another output file, or wait for it to end (`llmcorr runs cancel {label}` stops it)"
        )
    discard_stale_tmp(path)
    return path
