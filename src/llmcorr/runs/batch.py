"""Batch runs: a prompt file or a Python flow over every row of a table, recorded as a run.

    plan_batch(...)        everything the user can get wrong is checked here, before a run is recorded or a token spent
    run_batch_async(...)   a new run; `resume_from=` reuses another run's finished rows (no token spent on them)
    resume_batch_async     continue a stopped run: finished rows kept, failed and missing rows run
    rerun_batch_async      the same spec as a new run (free where the response cache has the answers)

A row's inputs are its columns, renamed by `mapping` ({input: "${data.column}"}). `upstream=RUN` joins another
run's rows by position, so `${run.outputs.x}` and `${run.inputs.x}` chain one run on another's results.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..data import RowWriter, Table, as_frame, check_output_path, open_table
from ..data.io import show_names
from ..errors import DataError, UserError
from ..prompts.prompty import load_prompty
from ..providers import Provider
from ..providers.base import GenParams
from ..scheduler import Scheduler
from ..store import RowRecord, RunRecord, Store
from .engine import Process, WorkItem, execute, make_scheduler, prompt_rows, recorded, request_timeout
from .estimate import Estimate, describe_estimate, estimate
from .flows import Flow, flow_context, flow_item, flow_rows, jsonable, load_flow
from .llm import CachedLLM
from .progress import row_progress
from .prompt_run import PromptJob
from .ray_executor import check_endpoints, check_executor, execute_ray
from .ray_worker import make_recipe
from .spec import RunSpec, data_sha256

log = logging.getLogger("llmcorr")
_REF = re.compile(r"^\$\{(data|run\.outputs|run\.inputs)\.([^}]+)\}$")
KINDS = ("prompt", "flow")


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


def parse_mapping(items: Mapping[str, str], columns: list[str]) -> dict[str, str]:
    """{input: "${data.column}" | "${run.outputs.key}" | "${run.inputs.key}"} → {input: column of the table}."""
    mapping = {}
    for name, ref in items.items():
        match = _REF.match(ref.strip())
        if not match:
            raise UserError(f"--map {name}={ref!r}: expected {name}='${{data.COLUMN}}' or '${{run.outputs.KEY}}'")
        source, key = match.groups()
        column = key if source == "data" else f"{source}.{key}"
        if column not in columns:
            if source != "data" and not any(c.startswith("run.") for c in columns):
                raise UserError(f"--map {name}={ref}: chaining on a run needs --run RUN_ID")
            have = [
                c for c in columns if (c.startswith(source + ".") if source != "data" else not c.startswith("run."))
            ]
            what = "the data has no column" if source == "data" else "the run has no"
            raise DataError(f"--map {name}: {what} {key!r} (there: {show_names(have) if have else 'nothing'})")
        mapping[name] = column
    return mapping


def row_inputs(cells: Mapping[Any, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """A row's values by column name, plus the mapped names; an empty cell is a missing value, not "nan"."""
    values = {str(k): jsonable(v) for k, v in cells.items()}
    values = {k: v for k, v in values.items() if v is not None}
    values.update({name: values[column] for name, column in mapping.items() if column in values})
    return values


def _upstream_cells(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None or row["status"] == "error":
        return {}
    cells = {f"run.outputs.{k}": v for k, v in (row["output"] or {}).items()}
    cells.update({f"run.inputs.{k}": v for k, v in (row["inputs"] or {}).items()})
    return cells


def upstream_columns(store: Store, ref: str) -> tuple[list[str], RunRecord]:
    """The `run.outputs.KEY` and `run.inputs.KEY` columns another run's finished rows bring, in order."""
    record = store.get_run(ref)
    columns: dict[str, None] = {}
    for row in store.iter_rows(record.id, "status, output_json, inputs_json"):
        columns.update(dict.fromkeys(_upstream_cells(row)))
    if not columns:
        raise DataError(f"run {record.label} has no finished rows to chain on")
    return list(columns), record


def _by_index(rows: Iterator[dict[str, Any]]) -> Callable[[int], dict[str, Any] | None]:
    """Look up rows (read in index order) by ascending index, reading each once."""
    pending = next(rows, None)

    def at(i: int) -> dict[str, Any] | None:
        nonlocal pending
        while pending is not None and pending["row_index"] < i:
            pending = next(rows, None)
        return pending if pending is not None and pending["row_index"] == i else None

    return at


@dataclass
class BatchPlan:
    """A validated batch run, ready to go: nothing has been recorded or spent yet. Its rows are read from the table
    (and the upstream run) each time `items()` is iterated: none is held in memory."""

    kind: str
    config: Config
    table: Table
    columns: list[str]  # the input columns of the output: the table's, then the upstream run's
    mapping: dict[str, str]
    params: GenParams
    flow: Flow | None = None
    job: PromptJob | None = None
    upstream: str | None = None
    estimate: Estimate | None = None
    scheduler: Scheduler = field(init=False)  # set once every row has been checked
    spec: RunSpec = field(init=False)

    @property
    def rows(self) -> int:
        return self.table.rows

    def cells(self) -> Iterator[dict[str, Any]]:
        """Each row's cells in input order (the upstream run's joined by position)."""
        if self.upstream is None:
            yield from self.table
            return
        with Store(self.config.store_path) as store:
            at = _by_index(store.iter_rows(self.upstream, "status, output_json, inputs_json"))
            for i, cells in enumerate(self.table):
                yield {**cells, **_upstream_cells(at(i))}

    def items(self, skip: Container[int] = (), cells: dict[int, dict[str, Any]] | None = None) -> Iterator[WorkItem]:
        """The work items of the rows not in `skip`, built as they are asked for; `cells` (if given) receives each
        item's row cells, for the output file."""
        for i, row in enumerate(self.cells()):
            if i in skip:
                continue
            values = row_inputs(row, self.mapping)
            if self.job is not None:
                item = self.job.item(i, values, self.mapping)
            else:
                assert self.flow is not None
                item = flow_item(i, values, self.flow, self.mapping, f"{self.table.source}: {self.table.where(i)}")
            if cells is not None:
                cells[i] = row
            yield item

    def processor(self, llm: CachedLLM) -> Process:
        if self.flow is not None:
            return flow_rows(self.flow)
        return prompt_rows(_PLAIN, llm, self.params)

    def reuse_key(self, item: WorkItem) -> str:
        """What determines a row's answer: the rendered messages of a prompt, the arguments of a flow."""
        if self.flow is None:
            return json.dumps([m.to_dict() for m in item.messages], sort_keys=True)
        return json.dumps(item.inputs, sort_keys=True, default=str)

    def stored_key(self, row: dict[str, Any]) -> str:
        return json.dumps(row["prompt"] if self.flow is None else row["inputs"], sort_keys=True, default=str)


class _PlainAnswers:
    def interpret(self, item: WorkItem, text: str) -> tuple[dict[str, Any], str | None]:
        return {"output": text}, None


_PLAIN = _PlainAnswers()


def plan_batch(
    flow: str | Path | Callable[..., Any],
    data: str | Path | Any | None = None,
    *,
    init: Mapping[str, Any] | None = None,
    mapping: Mapping[str, str] | None = None,
    upstream: str | None = None,
    output: str | Path | None = None,
    limit: int | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    seed: int = 0,
    endpoints: list[str] | None = None,
    provider: Provider | EndpointConfig | None = None,
    config: Config | None = None,
) -> BatchPlan:
    """Load the flow, read and join the data, build every row's inputs (and a prompt's messages), estimate."""
    config = config or Config.load()
    prompty, loaded = None, None
    if isinstance(flow, str | Path) and str(flow).endswith(".prompty"):
        if init:
            raise UserError("--init is for class flows, not .prompty files")
        prompty = load_prompty(flow)
    else:
        loaded = load_flow(flow if not isinstance(flow, Path) else str(flow), init)
    upstream_id, extra = None, list[str]()
    with Store(config.store_path) as store:
        if data is None:
            if upstream is None:
                raise UserError("--data is needed (or --run RUN_ID, to run over another run's data and outputs)")
            data = store.get_run(upstream).spec.get("data")
            if not data or data == "DataFrame":
                raise UserError(f"run {upstream} was made from a DataFrame: pass the data again")
        table = open_table(data)
        digest = data_sha256(Path(table.source) if table.source != "DataFrame" else table.frame())
        table = table.head(limit)
        if table.rows == 0:
            raise DataError(f"{table.source}: no rows")
        if upstream is not None:
            extra, up = upstream_columns(store, upstream)
            upstream_id = up.id
    if output is not None:
        check_output_path(output)  # an unwritable output fails now, not after the run
    columns = table.columns + [c for c in extra if c not in table.columns]
    mapped = parse_mapping(mapping or {}, columns)
    job = None
    if prompty is not None:
        job = PromptJob(prompty, table.where, table.source)
        params = prompty.gen_params()
        template, template_sha = str(prompty.path), prompty.template.sha256
    else:
        assert loaded is not None
        params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        template, template_sha = loaded.ref, loaded.sha256
    kind = "prompt" if prompty is not None else "flow"
    plan = BatchPlan(kind, config, table, columns, mapped, params, loaded, job, upstream_id)
    if job is None:
        for _ in plan.items():  # every row checked before anything else
            pass
    plan.scheduler = make_scheduler(config, endpoints, provider)
    if job is not None:  # every row rendered, and counted for the estimate, in one pass
        plan.estimate = estimate((item.messages for item in plan.items()), plan.scheduler, params.max_tokens)
    plan.spec = RunSpec(
        kind=kind,
        data=table.source,
        data_sha256=digest,
        template=template,
        template_sha256=template_sha,
        endpoints=[e.provider.describe() | {"name": e.name} for e in plan.scheduler.endpoints],
        params=params.to_dict(),
        options={
            "endpoint_configs": [e.config.model_dump(mode="json") for e in plan.scheduler.endpoints],
            "init": jsonable(dict(init or {})),
            "mapping": dict(mapping or {}),
            "limit": limit,
            "run": upstream_id,
        },
    )
    return plan


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

    with flow_context(llm, plan.params):
        async with recorded(store, run_id, plan.scheduler, plan.config, plan.kind, hint=hint):
            with row_progress(todo, f"running {run_id}", progress, plan.scheduler) as on_row:
                if executor == "ray":
                    recipe = make_recipe(plan.scheduler, store, plan.params, cache, width, job=_PLAIN, flow=plan.flow)
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
    store.finish_run(run_id, "completed", metrics=metrics, usage=plan.scheduler.stats())
    record = store.get_run(run_id)
    columns = _output_columns(plan, store, run_id)
    writer.finish_rows(_records(plan, store, run_id), columns)

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
    **options: Any,
) -> RunResult:
    """Plan, record and run a batch; see the module docstring and `llmcorr.run` for the options."""
    started = time.perf_counter()
    check_executor(executor)
    plan = plan_batch(flow, data, output=output, **options)
    if executor == "ray":
        check_endpoints(plan.scheduler)
    if plan.estimate is not None:
        log.info("%s over %d rows; estimate: %s", plan.spec.template, plan.rows, describe_estimate(plan.estimate))
    with Store(plan.config.store_path) as store:
        store.check_name_free(name)
        reuse: dict[int, RowRecord] = {}
        spec = plan.spec.to_dict() | {"cache": cache}
        if executor != "local":
            spec["options"]["executor"] = executor  # `runs show` says how it ran; a resume runs locally
        if resume_from is not None:
            source, reuse = _reusable(plan, store, resume_from)
            spec["options"]["resumed_from"] = source.id
            log.info("reusing %d of %d rows from run %s", len(reuse), plan.rows, source.label)
        run_id = _create_run(store, plan, spec, name, output)
        writer = RowWriter(output)
        store.add_rows(run_id, list(reuse.values()))
        for record in _records(plan, store, run_id, only_stored=True):
            writer.write(record.pop("row"), record)
        todo = plan.rows - len(reuse)
        result = await _execute(
            plan, store, run_id, reuse, todo, writer, progress, cache, started, concurrency, executor, ray_address
        )
    result.reused = len(reuse)
    return result


def recorded_plan(
    record: RunRecord,
    config: Config,
    data: str | Path | Any | None = None,
    flow: str | Path | Callable[..., Any] | None = None,
    output: str | Path | None = None,
) -> BatchPlan:
    """The plan that re-creates a recorded prompt or flow run, checked against its data and prompt/flow hashes."""
    spec = record.spec
    if record.kind not in KINDS:
        raise UserError(f"run {record.label} is a {record.kind} run")
    data = data if data is not None else spec["data"]
    if isinstance(data, str) and data == "DataFrame":
        raise UserError(f"run {record.label} was made from a DataFrame: pass it again (data=df)")
    if data_sha256(Path(data) if isinstance(data, str | Path) else as_frame(data)[0]) != spec["data_sha256"]:
        raise UserError(f"run {record.label}: the data has changed since the run was made ({spec['data']})")
    opts = spec["options"]
    endpoints = [EndpointConfig(**e) for e in opts.get("endpoint_configs", [])]
    plan = plan_batch(
        flow if flow is not None else spec["template"],
        data,
        init=opts.get("init") or None,
        mapping=opts.get("mapping") or {},
        upstream=opts.get("run"),
        output=output,
        limit=opts.get("limit"),
        max_tokens=spec["params"]["max_tokens"],
        temperature=spec["params"].get("temperature", 0.0),
        seed=spec["params"].get("seed") or 0,
        endpoints=[e.name for e in endpoints] or None,
        config=config.model_copy(update={"endpoints": endpoints}) if endpoints else config,
    )
    if plan.spec.template_sha256 != spec["template_sha256"]:
        what = "prompt file" if record.kind == "prompt" else "flow's source file"
        raise UserError(f"run {record.label}: the {what} {spec['template']} has changed since the run was made")
    return plan


def _create_run(
    store: Store, plan: BatchPlan, spec: dict[str, Any], name: str | None, output: str | Path | None
) -> str:
    """Record a new run of the plan (its estimate and output file too); returns its id."""
    estimate_json = plan.estimate.to_dict() if plan.estimate is not None else None
    run_id = store.create_run(plan.kind, spec, plan.rows, name=name, estimate=estimate_json)
    store.set_output_path(run_id, output)
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
) -> RunResult:
    """Continue a stopped prompt or flow run: finished rows kept (no token spent on them again), the rest run. The
    output goes to `output`, else to the file the run was writing (rewritten in input order at the end)."""
    started = time.perf_counter()
    if output is None:
        with Store((config or Config.load()).store_path) as store:
            output = store.get_run(run).output_path
    config, record, plan = _recorded(run, config, data, flow, output)
    with Store(config.store_path) as store:
        done = store.reopen_run(record.id)
        if output is not None:
            store.set_output_path(record.id, output)
        todo = plan.rows - len(done)
        log.info("resuming %s: %d of %d rows kept, %d to run", record.label, len(done), plan.rows, todo)
        writer = RowWriter(output)
        for row in _records(plan, store, record.id, only_stored=True):
            writer.write(row.pop("row"), row)
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
