"""Execute a DAG flow: each row's nodes as concurrently as the graph allows, then the aggregation nodes once.

    row = await run_row(flow, {"question": "..."}, run_node)       # RowResult: outputs, values for aggregation
    metrics = await run_aggregation(flow, rows, run_node)          # {aggregation node: what it returned}

What a node *does* is the caller's `run_node(node, inputs)` (a python function, a prompt render, an LLM call); this
module decides when each node runs, with what, and whether it runs at all. The rules are Prompt flow's, read in
promptflow-core `executor/_dag_manager.py` (`DAGManager`) and `executor/_async_nodes_scheduler.py`:

- a node is ready when every node its inputs or its activate condition read has completed or been bypassed
  (`_is_node_ready`)
- a ready node with `activate` is bypassed when the node its condition reads was bypassed, or when the condition's
  value is not equal to `is`; otherwise it runs, even if every node its inputs read was bypassed
  (`_is_node_bypassable`: "if a node has activate config, we will always use this config")
- a ready node without `activate` is bypassed when it reads at least one node and every node it reads was
  bypassed (`_is_node_bypassable`); a node that reads only flow inputs and literals always runs
- bypassing repeats until nothing more is bypassed, then every ready node starts; the same again each time a node
  finishes (`AsyncNodesScheduler._execute_nodes`): a node starts as soon as the nodes it reads are done
- an input that reads a bypassed node is None, or left out where the function has a default for it
  (`DAGManager.get_node_valid_inputs`; here `NodeInputs.for_function`)
- a bypassed node's output is None, in the flow's outputs and in what aggregation nodes read
  (`AsyncNodesScheduler._execute_with_thread_pool` sets it; unlike pf, `${bypassed.output.key}` in an output is None
  too, rather than an error)
- aggregation nodes run once over the lists of every row's values (`FlowExecutor._exec_aggregation`): an input
  reading a per-row node gets the list of that value over the rows, `${inputs.x}` the list of x over the rows
- a node that raises fails its row: the nodes still running are cancelled and the exception propagates, with a note
  naming the node
"""

from __future__ import annotations

import asyncio
import inspect
import json
import reprlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import DataError
from .model import DagFlow, Node, ValueType, shown
from .refs import Const, PathError, Reference, follow


@dataclass(frozen=True)
class NodeInputs:
    """A node's inputs, resolved: every input's value, None where the node it reads was bypassed (`bypassed`)."""

    values: dict[str, Any]
    bypassed: frozenset[str] = field(default_factory=frozenset)

    def for_function(self, fn: Callable[..., Any]) -> dict[str, Any]:
        """The keyword arguments for `fn`, as pf calls a node's function: an input whose node was bypassed is left
        out where `fn` has a default for it (so the default applies), else passed as None."""
        return self.for_parameters(inspect.signature(fn).parameters)

    def for_parameters(self, params: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
        """`for_function`, given the function's parameters (a node's, read once when its tool was loaded)."""
        if not self.bypassed:
            return self.values
        return {
            name: value
            for name, value in self.values.items()
            if name not in self.bypassed or name not in params or params[name].default is inspect.Parameter.empty
        }


RunNode = Callable[[Node, NodeInputs], Awaitable[Any]]


class RowResult(BaseModel):
    """One row's run of the per-row nodes: what the row records, and what the aggregation nodes will read."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    inputs: dict[str, Any]  # the flow inputs as the row ran them: defaults applied, types parsed
    outputs: dict[str, Any]  # the flow's outputs; None for an output whose node was bypassed
    aggregation_inputs: dict[str, Any] = {}  # `Reference.key` → this row's value (pf: `LineResult.aggregation_inputs`)
    bypassed: tuple[str, ...] = ()  # the nodes this row bypassed, in the order it bypassed them


def flow_inputs(flow: DagFlow, given: Mapping[str, Any]) -> dict[str, Any]:
    """A row's flow inputs as pf prepares them (`apply_default_value_for_input`, then `ensure_flow_inputs_type`): a
    missing input takes its default, every declared input must then have a value, and each is parsed to its type.
    Columns the flow does not declare are kept. DataError, one line, for a value that does not fit."""
    values = dict(given)
    for name, spec in flow.inputs.items():
        if name not in values and spec.default is not None:
            values[name] = spec.default
        if name not in values:
            raise DataError(f"{shown(flow.file)}: input {name!r}: no value in this row, and the flow gives no default")
        values[name] = _typed(spec.type, values[name], flow, name)
    return values


async def run_row(
    flow: DagFlow, given: Mapping[str, Any], run_node: RunNode, *, max_concurrency: int | None = None
) -> RowResult:
    """Run one row through the flow's per-row nodes (`max_concurrency`: at most that many nodes at once; None: as
    many as are ready). Returns the flow's outputs and the values its aggregation nodes will read."""
    inputs = flow_inputs(flow, given)
    dag = _Dag(flow, [node for node in flow.nodes if not node.aggregation], inputs, {})
    await _execute(dag, run_node, max_concurrency)
    outputs = {name: dag.value(out.reference, f"output {name!r}") for name, out in flow.outputs.items()}
    aggregated = {ref.key: dag.value(ref, f"aggregation input {ref}") for ref in flow.aggregation_refs()}
    return RowResult(inputs=inputs, outputs=outputs, aggregation_inputs=aggregated, bypassed=tuple(dag.bypassed))


async def run_aggregation(
    flow: DagFlow, rows: Sequence[RowResult], run_node: RunNode, *, max_concurrency: int | None = None
) -> dict[str, Any]:
    """Run the aggregation nodes once over `rows` (pf passes the rows that completed): each input that reads a
    per-row node gets the list of the rows' values, `${inputs.x}` the list of the rows' x. Returns what each
    aggregation node returned (None where it was bypassed); {} when the flow has none."""
    nodes = flow.aggregation_nodes
    if not nodes:
        return {}
    inputs = {name: [row.inputs.get(name) for row in rows] for name in flow.inputs}
    lists = {ref.key: [row.aggregation_inputs.get(ref.key) for row in rows] for ref in flow.aggregation_refs()}
    dag = _Dag(flow, nodes, inputs, lists)
    await _execute(dag, run_node, max_concurrency)
    return {node.name: dag.outputs.get(node.name) for node in nodes}


class _Dag:
    """The state of one execution of some of a flow's nodes (pf: `DAGManager`). `given` answers references to
    nodes outside this execution: for aggregation nodes, the lists of the per-row nodes' values."""

    def __init__(self, flow: DagFlow, nodes: Sequence[Node], inputs: Mapping[str, Any], given: Mapping[str, Any]):
        self.flow = flow
        self.pending = {node.name: node for node in nodes}  # in run order
        self.members = frozenset(self.pending)
        self.waits = _waits(flow, nodes, self.members)
        self.inputs = inputs
        self.given = given
        self.outputs: dict[str, Any] = {}
        self.bypassed: dict[str, None] = {}  # an ordered set

    @property
    def label(self) -> str:  # for messages only: not worked out for every row
        return shown(self.flow.file)

    def advance(self) -> list[Node]:
        """Bypass what can be bypassed until nothing more can, then take every ready node off pending to start."""
        while skip := [node for node in self.pending.values() if self._ready(node) and self._bypassable(node)]:
            for node in skip:
                self.bypassed[node.name] = None
                del self.pending[node.name]
        start = [node for node in self.pending.values() if self._ready(node)]
        for node in start:
            del self.pending[node.name]
        return start

    def _ready(self, node: Node) -> bool:
        return all(name in self.outputs or name in self.bypassed for name in self.waits[node.name])

    def _bypassable(self, node: Node) -> bool:
        if node.activate is not None:
            when = node.activate.when
            if isinstance(when, Reference) and when.source == "node" and when.name in self.bypassed:
                return True
            return self.value(when, f"node {node.name!r} activate when") != node.activate.is_
        read = [ref.name for ref in node.inputs.values() if isinstance(ref, Reference) and self._inside(ref)]
        return bool(read) and all(name in self.bypassed for name in read)

    def _inside(self, ref: Reference) -> bool:
        return ref.source == "node" and ref.name in self.members

    def node_inputs(self, node: Node) -> NodeInputs:
        values: dict[str, Any] = {}
        bypassed: set[str] = set()
        for name, value in node.inputs.items():
            values[name] = self.value(value, f"node {node.name!r} input {name!r}")
            if isinstance(value, Reference) and self._inside(value) and value.name in self.bypassed:
                bypassed.add(name)
        return NodeInputs(values, frozenset(bypassed))

    def value(self, value: Const | Reference, where: str) -> Any:
        """What a literal or reference stands for now; None for a bypassed node's output (whatever the path)."""
        if isinstance(value, Const):
            return value.value
        if value.source == "inputs":
            return self.inputs[value.name]  # every declared input has a value (`flow_inputs`)
        if not self._inside(value):
            return self.given[value.key]
        if value.name in self.bypassed:
            return None
        try:
            return follow(self.outputs[value.name], value.path)
        except PathError as err:
            found = f"the output of node {value.name!r} {err}"
            raise DataError(f"{self.label}: {where} reads {value}, but {found}") from None


_WAITS: dict[tuple[int, frozenset[str]], tuple[DagFlow, dict[str, frozenset[str]]]] = {}


def _waits(flow: DagFlow, nodes: Sequence[Node], members: frozenset[str]) -> dict[str, frozenset[str]]:
    """For each node, the nodes of this execution it waits for: worked out once per flow, not once per row (the
    flow is kept with its entry, so an id is never taken for another flow's)."""
    key = (id(flow), members)
    found = _WAITS.get(key)
    if found is not None and found[0] is flow:
        return found[1]
    waits = {node.name: frozenset(node.depends_on() & members) for node in nodes}
    if len(_WAITS) >= 16:
        _WAITS.clear()
    _WAITS[key] = (flow, waits)
    return waits


async def _execute(dag: _Dag, run_node: RunNode, limit: int | None) -> None:
    """Run `dag`'s nodes, each as soon as it is ready; the first failure cancels the rest and is raised."""
    gate = asyncio.Semaphore(limit) if limit else None
    running: dict[asyncio.Task[Any], Node] = {}
    try:
        while True:
            ready = dag.advance()
            if len(ready) == 1 and not running:  # a chain: the one node is awaited here, with no task of its own
                node = ready[0]
                dag.outputs[node.name] = await _call(node, dag.node_inputs(node), run_node, gate, dag)
                continue
            for node in ready:
                call = _call(node, dag.node_inputs(node), run_node, gate, dag)
                running[asyncio.create_task(call, name=f"node {node.name}")] = node
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            failure: BaseException | None = None
            for task in done:
                node = running.pop(task)
                error = task.exception()  # retrieved for every finished task, so none is reported as unretrieved
                if error is None:
                    dag.outputs[node.name] = task.result()
                elif failure is None:
                    failure = error
            if failure is not None:
                raise failure
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    if dag.pending:  # a validated flow has no cycle, so every node was run or bypassed
        raise RuntimeError(f"{dag.label}: nodes {', '.join(dag.pending)} never became ready")


async def _call(node: Node, inputs: NodeInputs, run_node: RunNode, gate: asyncio.Semaphore | None, dag: _Dag) -> Any:
    try:
        if gate is None:
            return await run_node(node, inputs)
        async with gate:
            return await run_node(node, inputs)
    except Exception as err:
        err.add_note(f"in node {node.name!r} of {dag.label}")
        raise


def _typed(kind: ValueType, value: Any, flow: DagFlow, name: str) -> Any:
    """`value` as a flow input of type `kind`, as pf's `ValueType.parse` reads it."""
    try:
        if kind == ValueType.INT:
            return int(value)
        if kind == ValueType.DOUBLE:
            return float(value)
        if kind == ValueType.BOOL:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(value)
        if kind == ValueType.STRING:
            return str(value)
        if kind == ValueType.LIST:
            parsed = json.loads(value) if isinstance(value, str) else value
            if not isinstance(parsed, list):
                raise ValueError(value)
            return parsed
        if kind == ValueType.OBJECT and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value  # pf: "it might really be a string"
        return value
    except (ValueError, TypeError):
        raise DataError(
            f"{shown(flow.file)}: input {name!r}: {reprlib.repr(value)} is not a valid {kind.value}"
        ) from None
