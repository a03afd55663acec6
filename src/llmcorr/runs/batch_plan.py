"""Planning a batch run: everything the user can get wrong is checked here, before a run is recorded or a token is
spent.

    plan_batch(...)        load the prompt file or flow, open and join the data, build every row's inputs, estimate
    BatchPlan              the lifecycle's `Plan` (kinds.py) for a prompt or flow run

A row's inputs are its columns, renamed by `mapping` ({input: "${data.column}"}). `upstream=RUN` joins another
run's rows by position, so `${run.outputs.x}` and `${run.inputs.x}` chain one run on another's results.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import Config, EndpointConfig
from ..data import Table, open_table
from ..data.io import show_names
from ..errors import DataError, UserError
from ..pf.connections import Connections
from ..pf.flex import FLEX_SUFFIXES, flex_file
from ..prompts.prompty import load_prompty
from ..providers import Provider
from ..providers.base import GenParams
from ..scheduler import Scheduler, describe_endpoints
from ..store import RowRecord, RunRecord, Store
from .batch_output import BatchOutput, by_index
from .engine import Process, WorkItem, make_scheduler, prompt_rows
from .estimate import Estimate, estimate
from .flows import Flow, flow_context, flow_item, flow_rows, jsonable, load_flow
from .kinds import Stage
from .llm import CachedLLM
from .outputs import check_output, source_file
from .prompt_run import PromptJob
from .ray_worker import Recipe, make_recipe
from .spec import (
    KindOptions,
    RunSpec,
    absolute,
    config_source,
    data_sha256,
    endpoint_records,
    recorded_file,
    spec_of,
)

_REF = re.compile(r"^\$\{(data|run\.outputs|run\.inputs)\.([^}]+)\}$")
KINDS = ("prompt", "flow", "dag")  # "dag": a Prompt flow DAG flow (dag_run.py), a flow of its own


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


def _upstream_cells(row: RowRecord | None) -> dict[str, Any]:
    """The `run.outputs.KEY` and `run.inputs.KEY` cells an upstream row brings (none from a failed or missing row);
    `row` read with its status, output and inputs."""
    if row is None or row.status == "error":
        return {}
    cells = {f"run.outputs.{k}": v for k, v in (row.output or {}).items()}
    cells.update({f"run.inputs.{k}": v for k, v in (row.inputs or {}).items()})
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
    in_flight: dict[int, dict[str, Any]] = field(default_factory=dict)  # the cells of the rows running, for the output

    @property
    def rows(self) -> int:
        return self.table.rows

    def cells(self) -> Iterator[dict[str, Any]]:
        """Each row's cells in input order (the upstream run's joined by position)."""
        if self.upstream is None:
            yield from self.table
            return
        with Store(self.config.store_path) as store:
            at = by_index(store.iter_rows(self.upstream, "status, output_json, inputs_json"))
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

    @property
    def verb(self) -> str:
        return "running"

    def describe(self) -> str:
        endpoints = describe_endpoints(self.scheduler.endpoints)
        return f"{self.spec.template} over {self.rows} rows; endpoints: {endpoints}"

    def stages(self, store: Store, run_id: str, skip: Container[int]) -> Iterator[Stage]:
        yield Stage(self.items(skip, self.in_flight))

    def width(self, concurrency: int | None) -> int:
        return concurrency or max(4, self.scheduler.max_concurrency * 2)

    def context(self, llm: CachedLLM) -> AbstractContextManager[None]:
        return flow_context(llm, self.params, self.flow)  # a flow's connections are active while it runs

    def processor(self, llm: CachedLLM) -> Process:
        if self.flow is not None:
            return flow_rows(self.flow)
        return prompt_rows(_PLAIN, llm, self.params)

    def recipe(self, store: Store, cache: bool, width: int) -> Recipe:
        return make_recipe(self.scheduler, store, self.params, cache, width, job=_PLAIN, flow=self.flow)

    def output(self, store: Store, run_id: str, path: str | Path | None, reused: int) -> BatchOutput:
        return BatchOutput(self, store, run_id, path, reused)

    def reuse_key(self, item: WorkItem) -> str:
        """What determines a row's answer: the rendered messages of a prompt, the arguments of a flow."""
        if self.flow is None:
            return json.dumps([m.to_dict() for m in item.messages], sort_keys=True)
        return json.dumps(item.inputs, sort_keys=True, default=str)

    def stored_key(self, row: RowRecord) -> str:
        """`reuse_key` of a stored row: its messages (prompt) or arguments (flow)."""
        return json.dumps(row.prompt if self.flow is None else row.inputs, sort_keys=True, default=str)

    def reusable(self, store: Store, ref: str) -> tuple[RunRecord, dict[int, RowRecord]]:
        """Another run's finished rows that answer this plan's rows: same prompt/flow (by hash), same parameters,
        and a row whose messages (prompt) or arguments (flow) are the same; copied with no token counted."""
        source = store.get_run(ref)
        recorded = spec_of(source)
        if source.kind != self.kind or recorded.template_sha256 != self.spec.template_sha256:
            what = "prompt file" if self.kind == "prompt" else "flow (its source file)"
            raise UserError(
                f"--resume-from {source.label}: that run used another {what}; its rows would not be answers"
            )
        if recorded.params != self.spec.params:
            raise UserError(
                f"--resume-from {source.label}: that run used other sampling parameters ({recorded.params})"
            )
        finished = {self.stored_key(r): r for r in store.iter_rows(source.id) if r.status != "error"}
        reuse = {}
        for item in self.items():
            r = finished.get(self.reuse_key(item))
            if r is not None:
                reuse[item.index] = RowRecord(
                    item.index,
                    item.sample_id,
                    item.inputs,
                    r.status,
                    prompt=r.prompt,
                    response=r.response,
                    response_key=r.response_key,
                    output=r.output,
                    error=r.error,
                    duration_ms=r.duration_ms,
                    endpoint=r.endpoint,
                    cached=True,
                )
        return source, reuse


class _PlainAnswers:
    def interpret(self, item: WorkItem, text: str) -> tuple[dict[str, Any], str | None]:
        return {"output": text}, None


_PLAIN = _PlainAnswers()


class BatchSpecOptions(KindOptions):
    """A prompt or flow run's options as its spec records them."""

    init: dict[str, Any] = Field(default_factory=dict)  # a class flow's arguments
    mapping: dict[str, str] = Field(default_factory=dict)  # input -> "${data.column}" / "${run.outputs.key}"
    limit: int | None = None  # only the first N rows
    run: str | None = None  # the upstream run joined by position
    flow_file: str | None = None  # where a flow's code was found (absolute)
    flow_path: str | None = None  # a module flow's import root
    connections: dict[str, str] = Field(default_factory=dict)  # --connection NAME=ENDPOINT
    variant: str | None = None  # a DAG flow's `${node.variant_id}` (--variant)
    overrides: dict[str, Any] = Field(default_factory=dict)  # a DAG flow's {"node.key": value} (--override)


def plan_batch(
    flow: str | Path | Callable[..., Any] | Flow,
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
    connections: Connections | Mapping[str, str] | None = None,
) -> BatchPlan:
    """Load the flow, read and join the data, build every row's inputs (and a prompt's messages), estimate.
    `flow`: a .prompty file, a flow reference or callable, or a loaded `Flow` (a DAG flow: dag_run.py);
    `connections`: the flow's Prompt flow connections as endpoints (pf/connections.py: by default the endpoint of
    the same name), or `--connection` mappings; resolved while the flow loads and while its rows run."""
    config = config or Config.load()
    if not isinstance(connections, Connections):
        connections = Connections.loose() if provider is not None else Connections.of(config, connections)
    prompty, loaded, flow_files = None, None, dict[str, str]()
    if isinstance(flow, str | Path) and str(flow).endswith(".prompty"):
        if init:
            raise UserError("--init is for class flows, not .prompty files")
        prompty = load_prompty(flow)
    elif isinstance(flow, Flow):
        loaded = flow
    else:
        if isinstance(flow, str | Path):
            flow = _absolute_flow(str(flow))
        with connections.active():  # a class flow's __init__ may load a Prompty with a connection
            loaded = load_flow(flow, init)
        flow_files = _flow_files(flow) if isinstance(flow, str) else {}
    upstream_id, extra = None, list[str]()
    with Store(config.store_path) as store:
        if data is None:
            if upstream is None:
                raise UserError("--data is needed (or --run RUN_ID, to run over another run's data and outputs)")
            up = store.get_run(upstream)
            up_data = spec_of(up).data
            if up_data == "DataFrame":
                raise UserError(f"run {upstream} was made from a DataFrame: pass the data again")
            data = recorded_file(up.label, up_data, "data file", "--data NEWPLACE")
        table = open_table(data)
        digest = data_sha256(Path(table.source) if table.source != "DataFrame" else table.frame())
        table = table.head(limit)
        if table.rows == 0:
            raise DataError(f"{table.source}: no rows")
        if upstream is not None:
            extra, up = upstream_columns(store, upstream)
            upstream_id = up.id
        if output is not None:  # an output the run reads, or another run writes, or cannot be written: now
            reads = {
                "data file": data if isinstance(data, str | Path) else None,
                "prompt file": prompty.path if prompty is not None else None,
                "flow source": (loaded.file or source_file(loaded.fn)) if loaded is not None else None,
            }
            check_output(output, reads, store)
    columns = table.columns + [c for c in extra if c not in table.columns]
    mapped = parse_mapping(mapping or {}, columns)
    job = None
    if prompty is not None:
        job = PromptJob(prompty, table.where, table.source)
        params = prompty.gen_params()
        template, template_sha = absolute(prompty.path), prompty.template.sha256
    else:
        assert loaded is not None
        params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        template, template_sha = loaded.ref, loaded.sha256
    kind = loaded.kind if loaded is not None else "prompt"
    plan = BatchPlan(kind, config, table, columns, mapped, params, loaded, job, upstream_id)
    if job is None:
        for _ in plan.items():  # every row checked before anything else
            pass
    plan.scheduler = make_scheduler(config, run_endpoints(endpoints, connections), provider)
    if job is not None:  # every row rendered, and counted for the estimate, in one pass
        plan.estimate = estimate((item.messages for item in plan.items()), plan.scheduler, params.max_tokens)
    plan.spec = RunSpec(
        kind=kind,
        data=absolute(table.source) if table.source != "DataFrame" else table.source,
        data_sha256=digest,
        template=template,
        template_sha256=template_sha,
        endpoints=[e.provider.describe() | {"name": e.name} for e in plan.scheduler.endpoints],
        params=params.to_dict(),
        options=BatchSpecOptions(
            endpoint_configs=endpoint_records(plan.scheduler),
            init=jsonable(dict(init or {})),
            mapping=dict(mapping or {}),
            limit=limit,
            run=upstream_id,
            config=config_source(config),
            flow_file=flow_files.get("flow_file"),
            flow_path=flow_files.get("flow_path"),
            connections=connections.mapping,
        ),
    )
    return plan


def run_endpoints(named: list[str] | None, connections: Connections) -> list[str] | None:
    """The endpoints a run sends to: those named (`--endpoint`), and those its flow's connections use; with neither,
    None (llmcorr.toml's default). A flow whose connections name endpoints does not also load the default one."""
    used = connections.endpoints()
    if not named:
        return used or None
    return list(dict.fromkeys([*named, *used]))


def _absolute_flow(flow: str) -> str:
    """`file.py:Name` with the file's absolute path, a flex flow as its flow.flex.yaml's absolute path (a module
    flow, `module:name`, as it is)."""
    file = flex_file(flow)
    if file is not None:
        return absolute(file)
    module_ref, sep, name = flow.rpartition(":")
    return f"{absolute(module_ref)}:{name}" if sep and module_ref.endswith(".py") else flow


def _flow_files(ref: str) -> dict[str, str]:
    """Where a flow's code was found, recorded so that a resume or rerun from another directory finds it again:
    its source file, and for a module flow the folder it was imported from (a flex flow: its flow.flex.yaml)."""
    if ref.endswith(FLEX_SUFFIXES):
        return {"flow_file": ref}
    module_ref = ref.rpartition(":")[0]
    if module_ref.endswith(".py"):
        return {"flow_file": module_ref}
    file = getattr(sys.modules.get(module_ref), "__file__", None)
    if not file:
        return {}
    path = Path(file).resolve()
    root = path.parent.parent if path.name == "__init__.py" else path.parent
    for _ in range(module_ref.count(".")):
        root = root.parent
    return {"flow_file": str(path), "flow_path": str(root)}
