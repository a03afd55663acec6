"""Batch runs: a prompt file or a Python flow over every row of a table, recorded as a run.

plan_batch(...)        (batch_plan.py) everything the user can get wrong is checked before a run is recorded
run_batch_async(...)   a new run; `resume_from=` reuses another run's finished rows (no token spent on them)
resume_batch_async     continue a stopped run: finished rows kept, failed (unless `skip_failed`) and missing rows run
rerun_batch_async      the same spec as a new run (free where the response cache has the answers)
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config
from ..data import RowWriter
from ..errors import UserError
from ..prompts.env import allowing_env, env_policy, key_names
from ..scheduler import describe_endpoints
from ..store import RowRecord, RunRecord, Store
from .batch_plan import _PLAIN, KINDS, BatchPlan, _by_index, parse_mapping, plan_batch, recorded_plan, row_inputs
from .engine import execute, recorded, request_timeout
from .estimate import describe_estimate
from .flows import flow_context, jsonable
from .llm import CachedLLM
from .outputs import claim_output, completed
from .progress import row_progress
from .ray_executor import check_endpoints, check_executor, execute_ray
from .ray_worker import make_recipe
from .spec import ConfirmFn, recorded_output

log = logging.getLogger("llmcorr")
__all__ = [
    "KINDS",
    "BatchPlan",
    "RunResult",
    "parse_mapping",
    "plan_batch",
    "recorded_plan",
    "rerun_batch_async",
    "resume_batch_async",
    "row_inputs",
    "run_batch_async",
]


@dataclass
class RunResult:
    """The outcome of `llmcorr.run`: the run's id, its row count, the flow's metrics, tokens; `table` (the input rows
    joined with their outputs) is read from the store when first asked for."""

    run_id: str
    rows: int
    metrics: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    wall_s: float
    reused: int = 0  # rows taken from another run (`resume_from`), no token spent
    _load: Callable[[], pd.DataFrame] | None = field(default=None, repr=False)
    _table: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            assert self._load is not None
            self._table = self._load()
        return self._table


def _reusable(plan: BatchPlan, store: Store, ref: str) -> tuple[RunRecord, dict[int, RowRecord]]:
    """Another run's finished rows that answer this plan's rows: same prompt/flow (by hash), same parameters, and a
    row whose messages (prompt) or arguments (flow) are the same; copied with no token counted."""
    source = store.get_run(ref)
    if source.kind != plan.kind or source.spec.get("template_sha256") != plan.spec.template_sha256:
        what = "prompt file" if plan.kind == "prompt" else "flow (its source file)"
        raise UserError(f"--resume-from {source.label}: that run used another {what}; its rows would not be answers")
    if source.spec.get("params") != plan.spec.params:
        raise UserError(
            f"--resume-from {source.label}: that run used other sampling parameters ({source.spec['params']})"
        )
    finished = {plan.stored_key(r): r for r in store.iter_rows(source.id) if r["status"] != "error"}
    reuse = {}
    for item in plan.items():
        r = finished.get(plan.reuse_key(item))
        if r is not None:
            reuse[item.index] = RowRecord(
                item.index,
                item.sample_id,
                item.inputs,
                r["status"],
                prompt=r["prompt"],
                response=r["response"],
                response_key=r.get("response_key"),
                output=r["output"],
                error=r["error"],
                duration_ms=r["duration_ms"],
                endpoint=r["endpoint"],
                cached=True,
            )
    return source, reuse


def _record(columns: list[str], cells: Mapping[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """A row of the output: its input columns, then its outputs (`output.KEY` where a name is taken), error, tokens."""
    out = {c: jsonable(cells.get(c)) for c in columns}
    for key, value in ((row or {}).get("output") or {}).items():
        out[key if key not in out else f"output.{key}"] = value
    out["error"] = row["error"] if row is not None else "not processed"
    out["tokens"] = (row["input_tokens"] or 0) + (row["output_tokens"] or 0) if row is not None else 0
    return out


def _output_columns(plan: BatchPlan, store: Store, run_id: str) -> list[str]:
    """The output's columns: the inputs, every output key the run's rows have (in order of appearance), error,
    tokens."""
    keys: dict[str, None] = {}
    for row in store.iter_rows(run_id, "output_json"):
        keys.update(dict.fromkeys(row["output"] or {}))
    inputs = set(plan.columns)
    return [*plan.columns, *(k if k not in inputs else f"output.{k}" for k in keys), "error", "tokens"]


def _records(plan: BatchPlan, store: Store, run_id: str, only_stored: bool = False) -> Iterator[dict[str, Any]]:
    """The output's rows in input order, read from the table and the store together (nothing held in memory);
    `only_stored`: just the rows the store has."""
    at = _by_index(store.iter_rows(run_id))
    for i, cells in enumerate(plan.cells()):
        row = at(i)
        if row is not None or not only_stored:
            yield {"row": i, **_record(plan.columns, cells, row)} if only_stored else _record(plan.columns, cells, row)


def _write_kept(plan: BatchPlan, store: Store, run_id: str, writer: RowWriter) -> None:
    """After a run that did not complete (failed, cancelled): the output file holds every row the store holds, in
    input order with its `row` number, whatever part of the streamed lines had reached the file. Best effort: a store
    that can no longer be read leaves the file as it was, and the run's own error is what the user sees."""
    try:
        columns = ["row", *_output_columns(plan, store, run_id)]
        kept = ({**r, "row": r["row"] + 1} for r in _records(plan, store, run_id, only_stored=True))
        writer.finish_rows(kept, columns)
    except Exception as exc:  # never hide the error that ended the run
        log.warning("could not rewrite %s with the run's kept rows: %s", writer.path, exc)


def _metrics(plan: BatchPlan, store: Store, run_id: str) -> dict[str, Any] | None:
    """The flow's aggregate over every row's outputs (in input order; {} for a row without one), if it has one."""
    if plan.flow is None or plan.flow.aggregate is None:
        return None
    at = _by_index(store.iter_rows(run_id, "output_json"))
    outputs = []
    for i in range(plan.rows):
        row = at(i)
        outputs.append((row["output"] or {}) if row is not None else {})
    metrics = jsonable(plan.flow.aggregate(outputs))
    return metrics if isinstance(metrics, dict) else ({"value": metrics} if metrics is not None else None)


async def _execute(
    plan: BatchPlan,
    store: Store,
    run_id: str,
    skip: Container[int],
    todo: int,
    writer: RowWriter,
    progress: bool,
    cache: bool,
    started: float,
    concurrency: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Run the plan's remaining `todo` rows (those not in `skip`) into a recorded run, then finish it (completed,
    cancelled or failed) and write the output file in input order. `executor="ray"` spreads the rows over a Ray
    cluster (runs/ray_executor.py)."""
    llm = CachedLLM(plan.scheduler, store, cache)
    width = concurrency or max(4, plan.scheduler.max_concurrency * 2)
    hint = f"; resume with `llmcorr runs resume {run_id}`"
    cells: dict[int, dict[str, Any]] = {}  # the input cells of the rows in flight, for the output file

    def written(on_row: Callable[[RowRecord], None] | None) -> Callable[[RowRecord], None]:
        def both(row: RowRecord) -> None:
            if on_row is not None:
                on_row(row)
            writer.write(row.row_index, _record(plan.columns, cells.pop(row.row_index, {}), row.__dict__))

        return both

    try:
        with flow_context(llm, plan.params):
            async with recorded(store, run_id, plan.scheduler, plan.config, plan.kind, hint=hint):
                with row_progress(todo, f"running {run_id}", progress, plan.scheduler) as on_row:
                    if executor == "ray":
                        recipe = make_recipe(
                            plan.scheduler, store, plan.params, cache, width, job=_PLAIN, flow=plan.flow
                        )
                        await execute_ray(
                            plan.items(skip, cells),
                            recipe,
                            store,
                            run_id,
                            plan.scheduler,
                            written(on_row),
                            request_timeout(plan.scheduler),
                            address=ray_address,
                        )
                    else:
                        await execute(
                            plan.items(skip, cells),
                            plan.processor(llm),
                            store,
                            run_id,
                            width,
                            written(on_row),
                            request_timeout(plan.scheduler),
                        )
                metrics = _metrics(plan, store, run_id)
    except BaseException:  # failed or cancelled: the file streamed so far may hold fewer rows than the store
        _write_kept(plan, store, run_id, writer)
        raise
    columns = _output_columns(plan, store, run_id)
    write = functools.partial(writer.finish_rows, _records(plan, store, run_id), columns)
    record = completed(store, run_id, write, metrics, plan.scheduler.stats())

    def load() -> pd.DataFrame:
        with Store(plan.config.store_path) as again:
            return pd.DataFrame.from_records(list(_records(plan, again, run_id)), columns=columns)

    wall = time.perf_counter() - started
    return RunResult(run_id, plan.rows, metrics, record.input_tokens, record.output_tokens, wall, _load=load)


async def run_batch_async(
    flow: str | Path | Callable[..., Any],
    data: str | Path | Any | None = None,
    *,
    name: str | None = None,
    output: str | Path | None = None,
    resume_from: str | None = None,
    cache: bool = True,
    progress: bool = False,
    concurrency: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    confirm: ConfirmFn | None = None,
    allow_env: list[str] | None = None,
    **options: Any,
) -> RunResult:
    """Plan, record and run a batch; see the module docstring and `llmcorr.run` for the options. `confirm` is
    asked with the estimate before anything is recorded or spent (False: the run does not start). `allow_env`: the
    environment variables a prompt file's inputs and sample may read (`--allow-env`; prompts/env.py)."""
    started = time.perf_counter()
    check_executor(executor)
    keys = key_names(options.get("config") or Config.load()) if allow_env else set()
    with allowing_env(env_policy(allow_env or [], keys)):
        plan = plan_batch(flow, data, output=output, **options)
    if executor == "ray":
        check_endpoints(plan.scheduler)
    endpoints = describe_endpoints(plan.scheduler.endpoints)
    log.info("%s over %d rows; endpoints: %s", plan.spec.template, plan.rows, endpoints)
    if plan.estimate is not None:
        log.info("estimate: %s", describe_estimate(plan.estimate))
    with Store(plan.config.store_path) as store:
        store.check_name_free(name)
        if confirm is not None and not confirm(plan.estimate, plan.scheduler):
            await plan.scheduler.aclose()
            raise UserError("run cancelled before it started; nothing was spent")
        reuse: dict[int, RowRecord] = {}
        spec = plan.spec.to_dict() | {"cache": cache}
        if executor != "local":
            spec["options"]["executor"] = executor  # `runs show` says how it ran; a resume runs locally
        if allow_env:
            spec["options"]["allow_env"] = sorted(set(allow_env))  # names only: a resume reads them again
        if resume_from is not None:
            source, reuse = _reusable(plan, store, resume_from)
            spec["options"]["resumed_from"] = source.id
            log.info("reusing %d of %d rows from run %s", len(reuse), plan.rows, source.label)
        run_id = _create_run(store, plan, spec, name, output)
        writer = RowWriter(output)
        store.add_rows(run_id, list(reuse.values()))
        for record in _records(plan, store, run_id, only_stored=True):
            writer.write(record.pop("row"), record)
        writer.flush()  # the file holds every kept row before any new one: a kill loses none of them
        todo = plan.rows - len(reuse)
        result = await _execute(
            plan, store, run_id, reuse, todo, writer, progress, cache, started, concurrency, executor, ray_address
        )
    result.reused = len(reuse)
    return result


def _create_run(
    store: Store, plan: BatchPlan, spec: dict[str, Any], name: str | None, output: str | Path | None
) -> str:
    """Record a new run of the plan (its estimate and output file too); returns its id."""
    estimate_json = plan.estimate.to_dict() if plan.estimate is not None else None
    run_id = store.create_run(plan.kind, spec, plan.rows, name=name, estimate=estimate_json)
    claim_output(store, run_id, output)
    return run_id


def _recorded(
    run: str,
    config: Config | None,
    data: str | Path | Any | None,
    flow: str | Path | Callable[..., Any] | None,
    output: str | Path | None,
) -> tuple[Config, RunRecord, BatchPlan]:
    """The config, the recorded run and the plan that re-creates it (see `recorded_plan`)."""
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
    return config, record, recorded_plan(record, config, data, flow, output)


async def resume_batch_async(
    run: str,
    *,
    data: str | Path | Any | None = None,
    flow: str | Path | Callable[..., Any] | None = None,
    output: str | Path | None = None,
    progress: bool = False,
    config: Config | None = None,
    skip_failed: bool = False,
) -> RunResult:
    """Continue a stopped prompt or flow run: finished rows kept (no token spent on them again), the rest run;
    `skip_failed` keeps its failed rows as they are (a request the server rejects fails again) and runs only the
    missing ones. The output goes to `output`, else to the file the run was writing (rewritten in input order at the
    end, and with every kept row if the resume fails or is cancelled)."""
    started = time.perf_counter()
    if output is None:
        with Store((config or Config.load()).store_path) as store:
            output = recorded_output(store.get_run(run))
    config, record, plan = _recorded(run, config, data, flow, output)
    with Store(config.store_path) as store:
        if output is not None:
            store.set_output_path(record.id, output)  # claimed first: a file another run writes stops this here
        done = store.reopen_run(record.id, retry_failed=not skip_failed)
        todo = plan.rows - len(done)
        log.info(
            "resuming %s: %d of %d rows kept, %d to run; endpoints: %s",
            record.label,
            len(done),
            plan.rows,
            todo,
            describe_endpoints(plan.scheduler.endpoints),
        )
        writer = RowWriter(output)
        for row in _records(plan, store, record.id, only_stored=True):
            writer.write(row.pop("row"), row)
        writer.flush()  # every kept row in the file before the first new one (a kill cannot truncate it to fewer)
        cache = bool(record.spec.get("cache", True))
        return await _execute(plan, store, record.id, done, todo, writer, progress, cache, started)


async def rerun_batch_async(
    run: str,
    *,
    name: str | None = None,
    data: str | Path | Any | None = None,
    flow: str | Path | Callable[..., Any] | None = None,
    output: str | Path | None = None,
    progress: bool = False,
    config: Config | None = None,
) -> RunResult:
    """A recorded prompt or flow run again, as a new run from its spec: free where its answers are cached."""
    started = time.perf_counter()
    config, record, plan = _recorded(run, config, data, flow, output)
    with Store(config.store_path) as store:
        store.check_name_free(name)
        run_id = _create_run(store, plan, plan.spec.to_dict() | {"cache": True, "rerun_of": record.id}, name, output)
        return await _execute(plan, store, run_id, (), plan.rows, RowWriter(output), progress, True, started)
