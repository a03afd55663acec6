"""Prompt flow's DAG flows (flow.dag.yaml) in llmcorr: the flow as typed data, and the graph that runs it.

    model.py   DagFlow, Node, FlowInput, FlowOutput, NodeVariants: a flow.dag.yaml as typed, validated data
    refs.py    literals and `${inputs.x}` / `${node.output.a.b}` references: parsed once, followed per row
    dag.py     load_dag(path), select_variant(flow, "${node.variant_1}"), override_nodes(flow, {"n.connection": c}):
               one-line UserError for a bad file
    checks.py  the graph rules (references, aggregation, cycles, variants) and the run order
    graph.py   run_row(flow, inputs, run_node), run_aggregation(flow, rows, run_node): pf's activate/bypass rules

Nothing here calls an LLM or writes a run: `run_node` is the caller's, so a run kind decides how a python, prompt or
llm node executes, and records rows as every other kind does.
"""

from .dag import DAG_FILE, load_dag, override_nodes, select_variant
from .graph import NodeInputs, RowResult, RunNode, flow_inputs, run_aggregation, run_row
from .model import DagFlow, FlowInput, FlowOutput, Node, NodeType, NodeVariants, Source, ValueType
from .refs import Const, Reference, parse_value

__all__ = [
    "DAG_FILE",
    "Const",
    "DagFlow",
    "FlowInput",
    "FlowOutput",
    "Node",
    "NodeInputs",
    "NodeType",
    "NodeVariants",
    "Reference",
    "RowResult",
    "RunNode",
    "Source",
    "ValueType",
    "flow_inputs",
    "load_dag",
    "override_nodes",
    "parse_value",
    "run_aggregation",
    "run_row",
    "select_variant",
]
