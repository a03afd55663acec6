"""Flex flows: any Python function or class is a flow, run over a data table and recorded as a run.

    def answer(question: str) -> str:                    # a function: one call per row
        return llmcorr.chat(f"Answer briefly: {question}")

    class Judge:                                          # a class: __init__ takes config, __call__ takes a row
        def __init__(self, strict: bool = False): ...
        async def __call__(self, answer: str) -> dict: ...    # sync or async
        def aggregate(self, rows: list[dict]) -> dict: ...   # optional: metrics over every row's output

Prompt flow's flex flows run unchanged: a folder with `flow.flex.yaml` (pf/flex.py), `promptflow` imports answered
by llmcorr's stand-ins while the flow loads and runs (pf/compat), a class's `__aggregate__(line_results)` preferred
over `aggregate`, and `log_metric` calls recorded into the run's metrics (pf/metrics.py).

A row's columns become the call's arguments by name (`--map arg='${data.column}'` when names differ). LLM calls
inside a flow go through `llmcorr.chat` / `llmcorr.achat`: they are scheduled, cached and counted for the row.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError, DataError, FatalProviderError, RunCancelled, UserError
from ..pf.compat import NotOffered, NotSupplied, promptflow_names
from ..pf.connections import Connections, current
from ..pf.flex import FlexFlow, flex_file, flow_folder, load_flex, typed_init
from ..pf.metrics import collecting
from ..pf.model import shown
from ..providers.base import GenParams, Message
from ..store import RowRecord
from .engine import WorkItem
from .flow_errors import describe_error
from .llm import CachedLLM
from .sync_calls import call_sync

AGGREGATION_VALUES = "__aggregation_values__"  # a row output's key for what aggregation reads: never shown


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
    sample: int = 0,
    endpoint: str | None = None,
    stop: list[str] | None = None,
) -> str:
    """Ask the run's LLM from inside a flow (async): scheduled under the endpoints' quotas, cached, counted.

    With temperature > 0, `sample=i` draws the i-th of several answers to the same prompt: each index is cached on
    its own (and seeded seed + i), so a rerun gets the same n samples back for free. `endpoint`: only that one of
    the run's endpoints answers (a Prompt flow node's connection); else any.
    """
    ctx = _context()
    seed = ctx.params.seed
    params = GenParams(
        max_tokens=max_tokens if max_tokens is not None else ctx.params.max_tokens,
        temperature=temperature if temperature is not None else ctx.params.temperature,
        seed=seed + sample if seed is not None else None,
        stop=tuple(stop) if stop else ctx.params.stop,
    )
    answer = await ctx.llm.complete(_messages(prompt), params, sample, endpoint)
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
    sample: int = 0,
    endpoint: str | None = None,
    stop: list[str] | None = None,
) -> str:
    """Ask the run's LLM from inside a sync flow (flows run in worker threads; this waits for the answer)."""
    ctx = _context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        coro = achat(
            prompt, max_tokens=max_tokens, temperature=temperature, sample=sample, endpoint=endpoint, stop=stop
        )
        return asyncio.run_coroutine_threadsafe(coro, ctx.loop).result()
    raise UserError("inside an async flow, use `await llmcorr.achat(...)`")


@dataclass
class Flow:
    """A loaded flow: the callable, its parameters, and an optional aggregate."""

    ref: str
    fn: Callable[..., Any]
    parameters: dict[str, inspect.Parameter]
    aggregate: Callable[[list[Any]], Any] | None = None
    init: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # of the flow's source file: a resumed run must run the same code
    kind: str = "flow"  # the run kind its runs are recorded as ("dag": a Prompt flow DAG flow, runs/dag_run.py)
    file: str | None = None  # the flow's own file, where it is not the source of `fn` (a flow.dag.yaml)
    # metrics from the finished rows themselves (a DAG flow's aggregation nodes), instead of `aggregate`; the rows
    # as read with their status, inputs and output only
    aggregate_rows: Callable[[list[RowRecord]], Awaitable[dict[str, Any] | None]] | None = None
    pf_aggregate: bool = False  # `aggregate` is Prompt flow's `__aggregate__`: finished rows' outputs, as pf gives them
    flex: FlexFlow | None = None  # a flow.flex.yaml's flow
    defaults: dict[str, Any] = field(default_factory=dict)  # its `inputs:` defaults, for a row without the column
    connections: Connections | None = None  # the connections it was loaded with, for its rows
    logged: dict[str, Any] = field(default_factory=dict)  # `log_metric` calls made while its rows ran (this process)

    @property
    def is_async(self) -> bool:
        call = self.fn if inspect.isfunction(self.fn) or inspect.ismethod(self.fn) else type(self.fn).__call__
        return inspect.iscoroutinefunction(call)

    def required(self) -> list[str]:
        empty = inspect.Parameter.empty
        return [n for n, p in self.parameters.items() if p.default is empty and n not in self.defaults]

    @contextmanager
    def running(self) -> Iterator[None]:
        """While its rows run: its connections, a flex flow's environment variables and folder, and a collector for
        its `log_metric` calls (kept in `logged`)."""
        with ExitStack() as stack:
            if self.connections is not None:
                stack.enter_context(self.connections.active())
            if self.flex is not None:
                stack.enter_context(self.flex.environment())
                stack.enter_context(flow_folder(self.flex.root))
            self.logged = stack.enter_context(collecting())
            yield


def import_file(path: Path, where: str | None = None) -> ModuleType:
    """A Python file imported afresh as the module named after it (as pf imports a flow's files). Whatever stops it
    importing — a syntax error, a missing module, a Prompt flow name llmcorr does not supply, an exception its code
    raises — is one ConfigError line naming `where`, the file and the line: `… qa/tool.py does not import (…)`."""
    label = f"{where}: {shown(path)}" if where else shown(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{label}: cannot load as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except (NotOffered, NotSupplied) as exc:  # a promptflow name llmcorr does not supply
        sys.modules.pop(path.stem, None)
        raise ConfigError(f"{label}: {exc}") from None
    except Exception as exc:
        sys.modules.pop(path.stem, None)
        raise ConfigError(f"{label} does not import ({describe_error(exc)})") from None
    return module


def _import(module_ref: str) -> Any:
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.is_file():
            raise ConfigError(f"{module_ref}: no such flow file")
        return import_file(path)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_ref)
    except (NotOffered, NotSupplied) as exc:
        raise ConfigError(f"flow module {module_ref!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise ConfigError(f"flow module {module_ref!r} not found ({exc.msg})") from None


def load_flow(flow: str | Callable[..., Any], init: Mapping[str, Any] | None = None) -> Flow:
    """`module:function`, `file.py:Class`, a flex flow (a folder with flow.flex.yaml, or the file), or a callable; a
    class is built with `init` as its arguments. Prompt flow's names are importable meanwhile (pf/compat)."""
    if isinstance(flow, str) and (file := flex_file(flow)) is not None:
        return _load_flex(load_flex(file), init)
    with promptflow_names():
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
        loaded = _built(ref, target, dict(init or {}), dict(init or {}))
    loaded.sha256 = _source_sha256(loaded.fn)
    return loaded


def _load_flex(flex: FlexFlow, init: Mapping[str, Any] | None) -> Flow:
    """A flow.flex.yaml's entry, imported from its folder with its environment variables set, built with its init
    (`init`, else the file's sample init, then its declared defaults)."""
    with promptflow_names(), flex.environment(), flow_folder(flex.root):
        target = flex.import_entry()
        args = flex.init_args(init) if inspect.isclass(target) else dict(init or {})
        loaded = _built(str(flex.path), target, args, dict(init or {}))
    # the file and the entry's module: what a resume must find unchanged
    digest = hashlib.sha256(flex.path.read_bytes() + _source_sha256(loaded.fn).encode()).hexdigest()
    loaded.sha256, loaded.flex, loaded.defaults = digest, flex, flex.input_defaults()
    return loaded


def _built(ref: str, target: Any, args: dict[str, Any], given: dict[str, Any]) -> Flow:
    """The flow `target` is: a function, or a class built from `args` (arguments typed as Prompt flow connections
    or model configurations get those, pf/flex.py `typed_init`); `given` is the init the run records."""
    if inspect.isclass(target):
        args = typed_init(target, args, f"flow {ref}")
        try:
            target = target(**args)
        except TypeError as exc:
            raise ConfigError(f"flow {ref}: cannot build it from --init: {exc}") from None
    elif args:
        raise ConfigError(f"flow {ref}: --init is for class flows")
    if not callable(target):
        raise ConfigError(f"flow {ref}: not callable")
    call = target if inspect.isfunction(target) or inspect.ismethod(target) else type(target).__call__
    params = dict(inspect.signature(call).parameters)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        params.pop(next(iter(params)), None)  # self
    params = {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    pf_aggregate = getattr(target, "__aggregate__", None)
    if callable(pf_aggregate) and len(inspect.signature(pf_aggregate).parameters) != 1:
        raise ConfigError(f"flow {ref}: __aggregate__ must take one argument (the rows' outputs), as in Prompt flow")
    aggregate = pf_aggregate if callable(pf_aggregate) else getattr(target, "aggregate", None)
    agg = aggregate if callable(aggregate) else None
    return Flow(ref, target, params, agg, given, pf_aggregate=callable(pf_aggregate), connections=current())


def _source_sha256(target: Any) -> str:
    """Hash of the file that defines the flow (of its source text when there is no file, as in a notebook)."""
    obj = target if inspect.isfunction(target) or inspect.ismethod(target) else type(target)
    try:
        path = inspect.getsourcefile(obj)
        if path and Path(path).is_file():
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()
    except (OSError, TypeError):
        return ""


def jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if getattr(value, "ndim", 0):  # a NumPy array (a Parquet list column read by pandas): its items
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def flow_item(i: int, values: dict[str, Any], flow: Flow, mapping: dict[str, str], where: str) -> WorkItem:
    """Row i's call arguments: its values by parameter name; a required one missing is an error naming the row."""
    missing = [n for n in flow.required() if n not in values]
    if missing:
        name = missing[0]
        how = (
            f"mapped from {mapping[name]}, empty here"
            if name in mapping
            else f"map it with --map {name}='${{data.COLUMN}}'"
        )
        raise DataError(f"{where}: no value for flow argument {name!r} ({how})")
    values = {**flow.defaults, **values}
    kwargs = {n: values[n] for n in flow.parameters if n in values}
    return WorkItem(index=i, sample_id=str(i), inputs=kwargs, messages=[])


@contextmanager
def flow_context(llm: CachedLLM, params: GenParams, flow: Flow | None = None) -> Iterator[None]:
    """Within this block (and the tasks and threads it starts), `llmcorr.chat`/`achat` ask `llm`, Prompt flow's
    names are importable, and `flow` runs as it loaded (`Flow.running`)."""
    token = _run.set(_RunContext(llm, params, asyncio.get_running_loop()))
    try:
        with promptflow_names(), flow.running() if flow is not None else ExitStack():
            yield
    finally:
        _run.reset(token)


def flow_rows(flow: Flow) -> Callable[[WorkItem], Any]:
    """The engine's processor for a flow: call it with the row's arguments; its LLM calls count for the row."""

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
                result = await call_sync(flow.fn, **item.inputs)  # the context travels to the thread
        except (FatalProviderError, RunCancelled):
            raise  # a bad key or a spent quota fails every row the same way: stop the run
        except Exception as exc:  # the user's code failed on this row: record it, go on
            status, error = "error", describe_error(exc, flow)
        else:
            status = "ok"
            if dataclasses.is_dataclass(result) and not isinstance(result, type):  # as Prompt flow: its fields
                result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
            output = jsonable(result if isinstance(result, dict) else {"output": result})
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
