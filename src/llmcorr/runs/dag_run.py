"""Prompt flow DAG flows as a run kind, `dag`: `llmcorr run FLOW_DIR --data D` runs a flow.dag.yaml unchanged.

    plan_dag(path, data, variant=..., connections={...}, ...)   load, check, resolve: a BatchPlan of kind "dag"

A DAG flow is a batch run whose flow is the graph: each row's flow inputs (its columns, mapped as for any flow, then
the flow's defaults and types) run through the per-row nodes as concurrently as the graph allows (pf/graph.py), each
node a traced step (runs/dag_nodes.py); the row's output is the flow's outputs. When every row is done, the
aggregation nodes run once over the finished rows' values and what they `log_metric` is the run's metrics. Planning,
recording, resume and rerun, the output file and the store are the batch kinds' (batch_plan.py, batch_output.py)
through the one lifecycle (lifecycle.py): what is particular to DAG flows is here and in dag_nodes.py.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError
from ..pf import (
    DAG_FILE,
    DagFlow,
    RowResult,
    flow_inputs,
    load_dag,
    override_nodes,
    run_aggregation,
    run_row,
    select_variant,
)
from ..pf.compat import promptflow_names
from ..pf.connections import Connections
from ..pf.metrics import collecting
from ..pf.model import shown
from ..store import RowRecord
from .batch_plan import BatchPlan, BatchSpecOptions, plan_batch
from .dag_nodes import DagNodes
from .flows import AGGREGATION_VALUES, Flow, describe_error, jsonable

KIND = "dag"
log = logging.getLogger("llmcorr")


def is_dag(flow: Any) -> bool:
    """Whether `flow` names a DAG flow: a folder holding flow.dag.yaml, or a `*.dag.yaml` file."""
    if not isinstance(flow, str | Path):
        return False
    path = Path(flow)
    if path.name.endswith((".dag.yaml", ".dag.yml")):
        return True
    return path.is_dir() and (path / DAG_FILE).is_file()


class DagRow:
    """A DAG flow as a flow callable: one row's flow inputs in, the flow's outputs out (and, for a flow with
    aggregation nodes, the values they will read, kept with the row under AGGREGATION_VALUES)."""

    def __init__(self, flow: DagFlow, nodes: DagNodes) -> None:
        self.flow, self.nodes = flow, nodes
        self.refs = flow.aggregation_refs()

    async def __call__(self, **given: Any) -> dict[str, Any]:
        result = await run_row(self.flow, given, self.nodes)
        outputs = dict(result.outputs)
        if self.refs:
            outputs[AGGREGATION_VALUES] = result.aggregation_inputs
        return outputs

    async def aggregate(self, rows: list[RowRecord]) -> dict[str, Any] | None:
        """The aggregation nodes over the rows that finished (as pf passes its completed lines): the metrics they
        log. A node that fails is a warning, and its span in the run's trace: the run completes (as in pf)."""
        if not self.flow.aggregation_nodes or not any(row.status == "ok" for row in rows):
            return None  # nothing to aggregate
        finished = [
            RowResult(
                inputs=flow_inputs(self.flow, row.inputs),
                outputs={k: v for k, v in (row.output or {}).items() if k != AGGREGATION_VALUES},
                aggregation_inputs=(row.output or {}).get(AGGREGATION_VALUES) or {},
            )
            for row in rows
            if row.status == "ok"
        ]
        with collecting() as metrics:
            try:
                await run_aggregation(self.flow, finished, self.nodes)
            except Exception as err:  # as in pf: the run completes, with the metrics logged before the failure
                log.warning("%s: aggregation failed: %s", shown(self.flow.file), describe_error(err))
        return jsonable(dict(metrics)) or None


def flow_sha256(flow: DagFlow) -> str:
    """What a resume must find unchanged: the flow file and the source file of every node it runs."""
    digest = hashlib.sha256()
    files = {flow.file, *(f for node in flow.nodes if (f := flow.source_file(node)) is not None)}
    for file in sorted(files):
        digest.update(str(file.relative_to(flow.dir) if file.is_relative_to(flow.dir) else file.name).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _parameters(flow: DagFlow, defaulted: Collection[str]) -> dict[str, inspect.Parameter]:
    """The flow's inputs that a row gives, as a flow's parameters. As in Prompt flow, an input with a default is
    read from the data only when `--column-mapping` maps it: unmapped (`defaulted`), its default wins over a column
    of its name (pf's `_complete_inputs_mapping_by_default_value`); such an input is left out, for `flow_inputs`."""
    return {
        name: inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in flow.inputs if name not in defaulted
    }


def plan_dag(
    path: str | Path,
    data: str | Path | Any | None = None,
    *,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    connections: Mapping[str, str] | None = None,
    init: Mapping[str, Any] | None = None,
    max_tokens: int = 256,
    config: Config | None = None,
    **options: Any,
) -> BatchPlan:
    """Load the DAG flow at `path` (its `variant`, as pf's `--variant ${node.variant_id}`; `overrides`
    {"node.key": value}, as a pf run's `connections:`), import its tools, compile its templates and resolve its
    connections (`connections`: --connection NAME=ENDPOINT), then plan it as a batch
    run (batch_plan.py `plan_batch` takes the rest of the options). Everything wrong is one UserError line first."""
    if init:
        raise UserError("--init is for flex flows (a class entry); a DAG flow takes its values from its inputs")
    config = config or Config.load()
    flow = load_dag(path)
    if variant:
        flow = select_variant(flow, variant)
    if overrides:
        flow = override_nodes(flow, overrides)
    given_provider = options.get("provider") is not None
    resolved = Connections.loose() if given_provider else Connections.of(config, connections)
    with resolved.active(), promptflow_names():  # tools import Prompt flow's names: llmcorr's, if pf is absent
        nodes = DagNodes(flow, resolved, max_tokens)
    row = DagRow(flow, nodes)
    mapped = set(options.get("mapping") or {})
    defaulted = [name for name, spec in flow.inputs.items() if spec.default is not None and name not in mapped]
    if defaulted:
        log.info(
            "%s: inputs with a default take it unless --column-mapping maps them, as in Prompt flow: %s",
            shown(flow.file),
            ", ".join(defaulted),
        )
    loaded = Flow(
        str(flow.file),
        row,
        _parameters(flow, defaulted),
        sha256=flow_sha256(flow),
        kind=KIND,
        file=str(flow.file),
        aggregate_rows=row.aggregate,
        connections=resolved,  # active while its rows run (Flow.running)
    )
    plan = plan_batch(loaded, data, max_tokens=max_tokens, config=config, connections=resolved, **options)
    assert isinstance(plan.spec.options, BatchSpecOptions)
    plan.spec.options.variant = flow.variant
    plan.spec.options.overrides = dict(overrides or {})
    return plan
