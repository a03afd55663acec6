"""Flex flows: any Python function or class is a flow, run over a data table and recorded as a run.

    def answer(question: str) -> str:                    # a function: one call per row
        return llmcorr.chat(f"Answer briefly: {question}")

    class Judge:                                          # a class: __init__ takes config, __call__ takes a row
        def __init__(self, strict: bool = False): ...
        async def __call__(self, answer: str) -> dict: ...    # sync or async
        def aggregate(self, rows: list[dict]) -> dict: ...   # optional: metrics over every row's output

A row's columns become the call's arguments by name (`--map arg='${data.column}'` when names differ). LLM calls
inside a flow go through `llmcorr.chat` / `llmcorr.achat`: they are scheduled, cached and counted for the row.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import importlib.util
import inspect
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct.data import check_output_path, read_table, write_table
from ..errors import ConfigError, DataError, FatalProviderError, RunCancelled, UserError
from ..providers import Provider
from ..providers.base import GenParams, Message
from ..store import RowRecord, Store
from .correction import make_scheduler
from .engine import WorkItem, execute, recorded, request_timeout
from .llm import CachedLLM
from .progress import row_progress
from .prompt_run import parse_mapping
from .spec import RunSpec, data_sha256


@dataclass
class _RowUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    cached: int = 0


@dataclass
class _RunContext:
    llm: CachedLLM
    params: GenParams
    loop: asyncio.AbstractEventLoop


_run: contextvars.ContextVar[_RunContext] = contextvars.ContextVar("llmcorr_run")
_row: contextvars.ContextVar[_RowUsage] = contextvars.ContextVar("llmcorr_row")


def _messages(prompt: str | list[Message] | list[dict[str, str]]) -> list[Message]:
    if isinstance(prompt, str):
        return [Message("user", prompt)]
    return [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in prompt]  # type: ignore[arg-type]


def _context() -> _RunContext:
    try:
        return _run.get()
    except LookupError:
        raise UserError("llmcorr.chat/achat work inside a flow run (llmcorr run / llmcorr.run)") from None


async def achat(
    prompt: str | list[Message] | list[dict[str, str]],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    """Ask the run's LLM from inside a flow (async): scheduled under the endpoints' quotas, cached, counted."""
    ctx = _context()
    params = GenParams(
        max_tokens=max_tokens if max_tokens is not None else ctx.params.max_tokens,
        temperature=temperature if temperature is not None else ctx.params.temperature,
        seed=ctx.params.seed,
    )
    answer = await ctx.llm.complete(_messages(prompt), params)
    usage = _row.get(None)
    if usage is not None:
        usage.calls += 1
        usage.cached += answer.cached
        usage.input_tokens += answer.input_tokens
        usage.output_tokens += answer.output_tokens
    return answer.text


def chat(
    prompt: str | list[Message] | list[dict[str, str]],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    """Ask the run's LLM from inside a sync flow (flows run in worker threads; this waits for the answer)."""
    ctx = _context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        coro = achat(prompt, max_tokens=max_tokens, temperature=temperature)
        return asyncio.run_coroutine_threadsafe(coro, ctx.loop).result()
    raise UserError("inside an async flow, use `await llmcorr.achat(...)`")


@dataclass
class Flow:
    """A loaded flow: the callable, its parameters, and an optional aggregate."""

    ref: str
    fn: Callable[..., Any]
    parameters: dict[str, inspect.Parameter]
    aggregate: Callable[[list[dict[str, Any]]], Any] | None = None
    init: dict[str, Any] = field(default_factory=dict)

    @property
    def is_async(self) -> bool:
        call = self.fn if inspect.isfunction(self.fn) or inspect.ismethod(self.fn) else type(self.fn).__call__
        return inspect.iscoroutinefunction(call)

    def required(self) -> list[str]:
        return [n for n, p in self.parameters.items() if p.default is inspect.Parameter.empty]


def _import(module_ref: str) -> Any:
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.is_file():
            raise ConfigError(f"{module_ref}: no such flow file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{module_ref}: cannot load as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"flow module {module_ref!r} not found ({exc.msg})") from None


def load_flow(flow: str | Callable[..., Any], init: Mapping[str, Any] | None = None) -> Flow:
    """`module:function`, `file.py:Class`, or a callable; a class is built with `init` as its arguments."""
    if isinstance(flow, str):
        module_ref, sep, name = flow.rpartition(":")
        if not sep or not module_ref or not name:
            raise ConfigError(f"flow {flow!r}: expected MODULE:NAME or FILE.py:NAME (or a .prompty file)")
        target = getattr(_import(module_ref), name, None)
        if target is None:
            raise ConfigError(f"flow {flow!r}: {module_ref} has no {name!r}")
        ref = flow
    else:
        target, ref = flow, f"{getattr(flow, '__module__', '?')}:{getattr(flow, '__qualname__', repr(flow))}"
    if inspect.isclass(target):
        try:
            target = target(**dict(init or {}))
        except TypeError as exc:
            raise ConfigError(f"flow {ref}: cannot build it from --init: {exc}") from None
    elif init:
        raise ConfigError(f"flow {ref}: --init is for class flows")
    if not callable(target):
        raise ConfigError(f"flow {ref}: not callable")
    call = target if inspect.isfunction(target) or inspect.ismethod(target) else type(target).__call__
    params = dict(inspect.signature(call).parameters)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        params.pop(next(iter(params)), None)  # self
    params = {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    aggregate = getattr(target, "aggregate", None)
    return Flow(ref, target, params, aggregate if callable(aggregate) else None, dict(init or {}))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass
class FlowResult:
    run_id: str
    table: pd.DataFrame
    metrics: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    wall_s: float


def _frame(data: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, Callable[[int], str], str]:
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True), (lambda i: f"row {i + 1}"), "DataFrame"
    frame, where = read_table(Path(data))
    return frame, where, str(data)


async def run_flow_async(
    flow: str | Callable[..., Any],
    data: str | Path | pd.DataFrame,
    *,
    init: Mapping[str, Any] | None = None,
    mapping: Mapping[str, str] | None = None,
    output: str | Path | None = None,
    name: str | None = None,
    limit: int | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    seed: int = 0,
    concurrency: int | None = None,
    endpoints: list[str] | None = None,
    provider: Provider | EndpointConfig | None = None,
    config: Config | None = None,
    cache: bool = True,
    progress: bool = False,
) -> FlowResult:
    """Run a flow over every row of a table and record it as a run; see the module docstring."""
    started = time.perf_counter()
    config = config or Config.load()
    loaded = load_flow(flow, init)
    frame, where, source = _frame(data)
    if limit is not None:
        frame = frame.head(limit)
    if frame.empty:
        raise DataError(f"{source}: no rows")
    if output is not None:
        check_output_path(output)
    columns = parse_mapping(mapping or {}, list(map(str, frame.columns)))
    items = [_item(i, frame, columns, loaded, where, source) for i in range(len(frame))]  # all checked up front
    scheduler = make_scheduler(config, endpoints, provider)
    params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    spec = RunSpec(
        kind="flow",
        data=source,
        data_sha256=data_sha256(data if isinstance(data, pd.DataFrame) else Path(data)),
        template=loaded.ref,
        template_sha256="",
        endpoints=[e.provider.describe() | {"name": e.name} for e in scheduler.endpoints],
        params=params.to_dict(),
        options={"init": _jsonable(loaded.init), "mapping": dict(mapping or {}), "limit": limit},
    )
    with Store(config.store_path) as store:
        store.check_name_free(name)
        run_id = store.create_run("flow", spec.to_dict(), len(items), name=name)
        ctx = _RunContext(CachedLLM(scheduler, store, cache), params, asyncio.get_running_loop())
        token = _run.set(ctx)
        try:
            async with recorded(store, run_id, scheduler):
                width = concurrency or max(4, scheduler.max_concurrency * 2)
                with row_progress(len(items), f"running {run_id}", progress, scheduler) as on_row:
                    await execute(items, _processor(loaded), store, run_id, width, on_row, request_timeout(scheduler))
                rows = {r["row_index"]: r for r in store.rows(run_id)}
                outputs = [rows[i]["output"] or {} if i in rows else {} for i in range(len(frame))]
                metrics = _jsonable(loaded.aggregate(outputs)) if loaded.aggregate else None
        finally:
            _run.reset(token)
        store.finish_run(
            run_id, "completed", metrics=metrics if isinstance(metrics, dict) else None, usage=scheduler.stats()
        )
        record = store.get_run(run_id)
    table = frame.reset_index(drop=True).copy()
    out = pd.DataFrame(outputs)
    for col in out.columns:
        table[col if col not in table.columns else f"output.{col}"] = out[col]
    table["error"] = [rows[i]["error"] if i in rows else "not processed" for i in range(len(table))]
    if output is not None:
        write_table(table, output)
    return FlowResult(
        run_id,
        table,
        metrics if isinstance(metrics, dict) else None,
        record.input_tokens,
        record.output_tokens,
        time.perf_counter() - started,
    )


def _item(
    i: int, frame: pd.DataFrame, columns: dict[str, str], flow: Flow, where: Callable[[int], str], source: str
) -> WorkItem:
    row = frame.iloc[i]
    values = {str(k): _jsonable(v) for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
    values.update({arg: values[col] for arg, col in columns.items() if col in values})
    missing = [n for n in flow.required() if n not in values]
    if missing:
        raise DataError(
            f"{source}: {where(i)}: no value for flow argument {missing[0]!r} "
            f"(map it with --map {missing[0]}='${{data.COLUMN}}')"
        )
    kwargs = {n: values[n] for n in flow.parameters if n in values}
    return WorkItem(index=i, sample_id=str(i), inputs=kwargs, messages=[])


def _processor(flow: Flow) -> Callable[[WorkItem], Any]:
    async def process(item: WorkItem) -> RowRecord:
        usage = _RowUsage()
        _row.set(usage)  # this task's own context: LLM calls below count for this row
        started = time.perf_counter()
        output: Any = None
        error: str | None = None
        try:
            if flow.is_async:
                result = await flow.fn(**item.inputs)
            else:
                result = await asyncio.to_thread(flow.fn, **item.inputs)  # the context travels to the thread
        except (FatalProviderError, RunCancelled):
            raise  # a bad key or a spent quota fails every row the same way: stop the run
        except Exception as exc:  # the user's code failed on this row: record it, go on
            status, error = "error", f"{type(exc).__name__}: {exc}"
        else:
            status = "ok"
            output = _jsonable(result if isinstance(result, dict) else {"output": result})
        return RowRecord(
            item.index,
            item.sample_id,
            item.inputs,
            status,
            output=output,
            error=error,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            duration_ms=(time.perf_counter() - started) * 1000,
            attempts=usage.calls,
            cached=usage.calls > 0 and usage.cached == usage.calls,
        )

    return process
