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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..data import RowWriter, as_frame, check_output_path
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
from .spec import RunSpec, data_sha256

log = logging.getLogger("llmcorr")
_REF = re.compile(r"^\$\{(data|run\.outputs|run\.inputs)\.([^}]+)\}$")
KINDS = ("prompt", "flow")


@dataclass
class RunResult:
    """The outcome of `llmcorr.run`: the input rows joined with their outputs, the flow's metrics, the run's id."""

    run_id: str
    table: pd.DataFrame
    metrics: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    wall_s: float
    reused: int = 0  # rows taken from another run (`resume_from`), no token spent

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


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
            raise DataError(f"--map {name}: {what} {key!r} (there: {', '.join(have) or 'nothing'})")
        mapping[name] = column
    return mapping


def row_inputs(frame: pd.DataFrame, i: int, mapping: dict[str, str]) -> dict[str, Any]:
    """Row i's values by column name, plus the mapped names; an empty cell is a missing value, not "nan"."""
    values = {str(k): jsonable(v) for k, v in frame.iloc[i].items()}
    values = {k: v for k, v in values.items() if v is not None}
    values.update({name: values[column] for name, column in mapping.items() if column in values})
    return values


def join_upstream(frame: pd.DataFrame, store: Store, ref: str) -> tuple[pd.DataFrame, RunRecord]:
    """The table with another run's rows joined by position: `run.outputs.KEY` and `run.inputs.KEY` columns
    (empty where that run has no finished row)."""
    record = store.get_run(ref)
    rows = {r["row_index"]: r for r in store.rows(record.id)}
    joined: list[dict[str, Any]] = []
    for i in range(len(frame)):
        r = rows.get(i)
        cells: dict[str, Any] = {}
        if r is not None and r["status"] != "error":
            cells.update({f"run.outputs.{k}": v for k, v in (r["output"] or {}).items()})
            cells.update({f"run.inputs.{k}": v for k, v in (r["inputs"] or {}).items()})
        joined.append(cells)
    extra = pd.DataFrame(joined, index=frame.index)
    if extra.columns.empty:
        raise DataError(f"run {record.label} has no finished rows to chain on")
    return pd.concat([frame, extra], axis=1), record


@dataclass
class BatchPlan:
    """A validated batch run, ready to go: nothing has been recorded or spent yet."""

    kind: str
    config: Config
    frame: pd.DataFrame
    items: list[WorkItem]
    scheduler: Scheduler
    params: GenParams
    spec: RunSpec
    estimate: Estimate | None
    flow: Flow | None = None

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
    with Store(config.store_path) as store:
        if data is None:
            if upstream is None:
                raise UserError("--data is needed (or --run RUN_ID, to run over another run's data and outputs)")
            data = store.get_run(upstream).spec.get("data")
            if not data or data == "DataFrame":
                raise UserError(f"run {upstream} was made from a DataFrame: pass the data again")
        frame, where, source = as_frame(data)
        digest = data_sha256(Path(source) if source != "DataFrame" else frame)
        if limit is not None:
            frame = frame.head(limit)
        if frame.empty:
            raise DataError(f"{source}: no rows")
        upstream_id = None
        if upstream is not None:
            frame, up = join_upstream(frame, store, upstream)
            upstream_id = up.id
    if output is not None:
        check_output_path(output)  # an unwritable output fails now, not after the run
    columns = parse_mapping(mapping or {}, list(map(str, frame.columns)))
    if prompty is not None:
        job = PromptJob(prompty, where, source)
        items = [job.item(i, row_inputs(frame, i, columns), columns) for i in range(len(frame))]
        params = prompty.gen_params()
        template, template_sha = str(prompty.path), prompty.template.sha256
    else:
        assert loaded is not None
        items = [
            flow_item(i, row_inputs(frame, i, columns), loaded, columns, f"{source}: {where(i)}")
            for i in range(len(frame))
        ]
        params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        template, template_sha = loaded.ref, loaded.sha256
    scheduler = make_scheduler(config, endpoints, provider)  # every row checked: now the endpoints
    planned = None
    if prompty is not None:
        planned = estimate((item.messages for item in items), scheduler, params.max_tokens)
    spec = RunSpec(
        kind="prompt" if prompty is not None else "flow",
        data=source,
        data_sha256=digest,
        template=template,
        template_sha256=template_sha,
        endpoints=[e.provider.describe() | {"name": e.name} for e in scheduler.endpoints],
        params=params.to_dict(),
        options={
            "endpoint_configs": [e.config.model_dump(mode="json") for e in scheduler.endpoints],
            "init": jsonable(dict(init or {})),
            "mapping": dict(mapping or {}),
            "limit": limit,
            "run": upstream_id,
        },
    )
    return BatchPlan(spec.kind, config, frame, items, scheduler, params, spec, planned, loaded)


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
    finished = {plan.stored_key(r): r for r in store.rows(source.id) if r["status"] != "error"}
    reuse = {}
    for item in plan.items:
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


def _record(frame: pd.DataFrame, i: int, row: dict[str, Any] | None) -> dict[str, Any]:
    """Row i of the output: its input columns, then its outputs (`output.KEY` where a name is taken), error, tokens."""
    out = {str(k): jsonable(v) for k, v in frame.iloc[i].items()}
    for key, value in ((row or {}).get("output") or {}).items():
        out[key if key not in out else f"output.{key}"] = value
    out["error"] = row["error"] if row is not None else "not processed"
    out["tokens"] = (row["input_tokens"] or 0) + (row["output_tokens"] or 0) if row is not None else 0
    return out


async def _execute(
    plan: BatchPlan,
    store: Store,
    run_id: str,
    skip: set[int],
    writer: RowWriter,
    progress: bool,
    cache: bool,
    started: float,
    concurrency: int | None = None,
) -> RunResult:
    """Run the plan's remaining rows into a recorded run, then finish it (completed, cancelled or failed)."""
    llm = CachedLLM(plan.scheduler, store, cache)
    width = concurrency or max(4, plan.scheduler.max_concurrency * 2)
    items = [item for item in plan.items if item.index not in skip]
    hint = f"; resume with `llmcorr runs resume {run_id}`"

    def written(on_row: Callable[[RowRecord], None] | None) -> Callable[[RowRecord], None]:
        def both(row: RowRecord) -> None:
            if on_row is not None:
                on_row(row)
            writer.write(row.row_index, _record(plan.frame, row.row_index, row.__dict__))

        return both

    with flow_context(llm, plan.params):
        async with recorded(store, run_id, plan.scheduler, plan.config, plan.kind, hint=hint):
            with row_progress(len(items), f"running {run_id}", progress, plan.scheduler) as on_row:
                await execute(
                    items, plan.processor(llm), store, run_id, width, written(on_row), request_timeout(plan.scheduler)
                )
            rows = {r["row_index"]: r for r in store.rows(run_id)}
            metrics = None
            if plan.flow is not None and plan.flow.aggregate is not None:
                outputs = [(rows[i]["output"] or {}) if i in rows else {} for i in range(len(plan.frame))]
                metrics = jsonable(plan.flow.aggregate(outputs))
    metrics = metrics if isinstance(metrics, dict) else ({"value": metrics} if metrics is not None else None)
    store.finish_run(run_id, "completed", metrics=metrics, usage=plan.scheduler.stats())
    record = store.get_run(run_id)
    table = pd.DataFrame([_record(plan.frame, i, rows.get(i)) for i in range(len(plan.frame))])
    writer.finish(table)
    return RunResult(run_id, table, metrics, record.input_tokens, record.output_tokens, time.perf_counter() - started)


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
    **options: Any,
) -> RunResult:
    """Plan, record and run a batch; see the module docstring and `llmcorr.run` for the options."""
    started = time.perf_counter()
    plan = plan_batch(flow, data, output=output, **options)
    if plan.estimate is not None:
        log.info("%s over %d rows; estimate: %s", plan.spec.template, len(plan.items), describe_estimate(plan.estimate))
    with Store(plan.config.store_path) as store:
        store.check_name_free(name)
        reuse: dict[int, RowRecord] = {}
        spec = plan.spec.to_dict() | {"cache": cache}
        if resume_from is not None:
            source, reuse = _reusable(plan, store, resume_from)
            spec["options"]["resumed_from"] = source.id
            log.info("reusing %d of %d rows from run %s", len(reuse), len(plan.items), source.label)
        run_id = _create_run(store, plan, spec, name, output)
        writer = RowWriter(output)
        for row in reuse.values():
            store.add_row(run_id, row)
            writer.write(row.row_index, _record(plan.frame, row.row_index, row.__dict__))
        result = await _execute(plan, store, run_id, set(reuse), writer, progress, cache, started, concurrency)
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
    run_id = store.create_run(plan.kind, spec, len(plan.items), name=name, estimate=estimate_json)
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
    """Continue a stopped prompt or flow run: finished rows kept (no token spent on them again), the rest run."""
    started = time.perf_counter()
    config, record, plan = _recorded(run, config, data, flow, output)
    with Store(config.store_path) as store:
        done = store.reopen_run(record.id)
        if output is not None:
            store.set_output_path(record.id, output)
        log.info(
            "resuming %s: %d of %d rows kept, %d to run",
            record.label,
            len(done),
            len(plan.items),
            len(plan.items) - len(done),
        )
        writer = RowWriter(output)
        for row in store.rows(record.id):
            writer.write(row["row_index"], _record(plan.frame, row["row_index"], row))
        cache = bool(record.spec.get("cache", True))
        return await _execute(plan, store, record.id, done, writer, progress, cache, started)


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
        return await _execute(plan, store, run_id, set(), RowWriter(output), progress, True, started)
