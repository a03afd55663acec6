"""Where a run may write its output file, checked before anything is recorded or spent (run, correct, resume,
rerun, and the dashboard's runs, which go through the same commands).

    claim_output(store, run_id, output)  record a new run's output, atomically refused (and the run removed) if
                                         another run began writing the file since it was checked
    completed(store, run_id, write, …)   a run whose rows are all done: its output written, then marked completed
    check_output(output, reads, store)   one line (exit 2) for an output that is a file the run reads (its data,
                                         prompt file, flow source, template, the store), or that another live run is
                                         writing; then the leftovers of an atomic rewrite a killed process left
                                         beside it are removed

"The same file" is the same file however it is named: through a symbolic link, a hard link or `..`
(store/edits.py `same_file`). Another run is writing the file when the store has
it `running` with that output: opening the store has already marked a run whose process died as `interrupted`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..data import check_output_path
from ..data.output import discard_stale_tmp
from ..errors import DataError, OutputError
from ..store import RunRecord, Store
from ..store.edits import same_file


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
    writer = store.live_writer(path)
    if writer is not None:  # said here, before the run is recorded; claimed atomically when it is (store/edits.py)
        label = writer["name"] or writer["id"]
        raise DataError(
            f"--output {output}: run {label} (pid {writer['pid']} on {writer['host']}) is writing that file now; "
            f"choose another output file, or wait for it to end (`llmcorr runs cancel {label}` stops it)"
        )
    discard_stale_tmp(path)
    return path


def claim_output(store: Store, run_id: str, output: str | Path | None) -> None:
    """Record the new run `run_id`'s output file; if another run claimed it since `check_output`, the new run, which
    has done nothing yet, is removed and the one line raised."""
    try:
        store.set_output_path(run_id, output)
    except DataError:
        store.delete_run(run_id)
        raise


def completed(
    store: Store, run_id: str, write: Callable[[], object], metrics: dict[str, Any] | None, usage: dict[str, Any]
) -> RunRecord:
    """Finish a run whose rows are all done: `write` its output file first, then mark it completed. A kill during
    the write leaves the run `interrupted`, and its resume writes the file again (asking nothing): never `completed`
    beside a file still in completion order. A file the disk refuses: the run is completed all the same (its rows are
    in the store), and the `OutputError` names the resume that writes the file."""
    refused: OutputError | None = None
    try:
        write()
    except OutputError as exc:
        refused = exc
    store.finish_run(run_id, "completed", metrics=metrics, usage=usage)
    record = store.get_run(run_id)
    if refused is not None:
        refused.run = record.label
        raise refused
    return record
