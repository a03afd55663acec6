"""The graph rules of a DAG flow, checked when it loads: variants applied, references, aggregation, cycles, order.

The rules are Prompt flow's (promptflow-core `executor/flow_validator.py`: `_validate_nodes_topology`,
`_ensure_nodes_order`, `_ensure_outputs_valid`; promptflow-devkit `_orchestrator/utils.py` `overwrite_variant`):

- node names are unique; every `${inputs.x}` names a declared input, every `${node.output}` an existing node
- a per-row node cannot read an aggregation node (that runs once, after all rows); an aggregation node's
  `activate` may read flow inputs and aggregation nodes only
- no cycles; the nodes are put in the order pf gives them: repeatedly the first declared node whose
  dependencies (inputs and activate condition) are all placed
- an output that reads an aggregation node is dropped with a warning (pf: "will not take effect")
- a `use_variants` node is replaced, name kept, by its selected or default variant's node

Stricter than pf, because here each is cheaper to fix before a run than after it: a supported node's source file
must exist, and an activate condition's flow input must be declared.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from ..errors import UserError
from .model import SUPPORTED_TYPES, DagFlow, FlowOutput, Node, SourceType, shown
from .refs import Reference

log = logging.getLogger("llmcorr")


def resolve(flow: DagFlow, chosen: Mapping[str, str]) -> DagFlow:
    """`flow` with its declared nodes' variants applied (`chosen`: node → variant id, else each default), checked,
    and in run order. UserError, one line naming the file and the node, for the first rule broken."""
    label = shown(flow.file)
    seen: set[str] = set()
    for node in flow.declared:
        if node.name in seen:
            raise UserError(f"{label}: node {node.name!r}: the name appears twice in nodes (names must be unique)")
        seen.add(node.name)
    nodes = [_with_variant(node, flow, chosen, label) if node.use_variants else node for node in flow.declared]
    names = {node.name for node in nodes}
    aggregation = {node.name for node in nodes if node.aggregation}
    for node in nodes:
        _check_node(node, flow, names, aggregation, label)
    ordered = topological_order(nodes, label)
    outputs = _checked_outputs(flow.outputs, flow, names, aggregation, label)
    return flow.model_copy(update={"nodes": tuple(ordered), "outputs": outputs})


def topological_order(nodes: Iterable[Node], label: str = "flow") -> list[Node]:
    """`nodes` in an order that runs: each after every node it reads, otherwise in declared order (pf's order).
    UserError naming a cycle, if there is one."""
    pending = {node.name: node for node in nodes}
    ordered: list[Node] = []
    while pending:
        ready = next((n for n in pending.values() if not n.depends_on() & pending.keys()), None)
        if ready is None:
            cycle = _cycle(pending)
            raise UserError(f"{label}: node {cycle[0]!r}: its references form a cycle: {' → '.join(cycle)}")
        ordered.append(ready)
        del pending[ready.name]
    return ordered


def _cycle(pending: Mapping[str, Node]) -> list[str]:
    """One cycle among nodes none of which can be placed: each has a dependency among them, so following those
    must come back to a node already seen."""
    path = [next(iter(pending))]
    while True:
        following = sorted(pending[path[-1]].depends_on() & pending.keys())[0]
        if following in path:
            return [*path[path.index(following) :], following]
        path.append(following)


def _with_variant(node: Node, flow: DagFlow, chosen: Mapping[str, str], label: str) -> Node:
    variants = flow.node_variants.get(node.name)
    if variants is None or not variants.variants:
        raise UserError(f"{label}: node {node.name!r}: use_variants is true but node_variants has none for it")
    wanted = chosen.get(node.name) or variants.default_variant_id
    if not wanted:
        raise UserError(f"{label}: node_variants {node.name!r}: expected default_variant_id")
    if wanted not in variants.variants:
        known = ", ".join(variants.variants)
        raise UserError(f"{label}: node_variants {node.name!r}: no variant {wanted!r} (variants: {known})")
    return variants.variants[wanted].node.model_copy(update={"name": node.name, "variant": wanted})


def _check_node(node: Node, flow: DagFlow, names: set[str], aggregation: set[str], label: str) -> None:
    where = f"{label}: node {node.name!r}"
    if node.type is None:
        raise UserError(f"{where}: expected type (python, prompt or llm), or use_variants: true with node_variants")
    if node.type in SUPPORTED_TYPES:
        if node.source is None:
            raise UserError(f"{where}: expected source: {{type: code, path: FILE}}")
        if node.source.type == SourceType.CODE:
            if not node.source.path:
                raise UserError(f"{where}: source: expected path (a file in the flow's folder)")
            if flow.source_file(node) is None:
                raise UserError(
                    f"{where}: source {node.source.path!r} not found in {shown(flow.dir)} (nor in additional_includes)"
                )
    for field, ref in node.references():
        what = "activate when" if field == "activate" else f"input {field!r}"
        if ref.source == "inputs":
            if ref.name not in flow.inputs:
                declared = ", ".join(flow.inputs) or "none"
                raise UserError(
                    f"{where}: {what} reads {ref}, but the flow declares no input {ref.name!r} (inputs: {declared})"
                )
            continue
        if ref.name not in names:
            raise UserError(f"{where}: {what} reads {ref}, but the flow has no node {ref.name!r}")
        if ref.name in aggregation and not node.aggregation:
            raise UserError(
                f"{where}: {what} reads aggregation node {ref.name!r}, which runs once after all rows; "
                "only aggregation nodes can read it"
            )
        if field == "activate" and node.aggregation and ref.name not in aggregation:
            raise UserError(
                f"{where}: activate when reads per-row node {ref.name!r}; an aggregation node's condition can "
                "read only flow inputs and aggregation nodes"
            )


def _checked_outputs(
    outputs: Mapping[str, FlowOutput], flow: DagFlow, names: set[str], aggregation: set[str], label: str
) -> dict[str, FlowOutput]:
    kept: dict[str, FlowOutput] = {}
    for name, output in outputs.items():
        ref = output.reference
        if isinstance(ref, Reference):
            if ref.source == "inputs" and ref.name not in flow.inputs:
                raise UserError(f"{label}: output {name!r}: reads {ref}, but the flow declares no input {ref.name!r}")
            if ref.source == "node" and ref.name not in names:
                raise UserError(f"{label}: output {name!r}: reads {ref}, but the flow has no node {ref.name!r}")
            if ref.source == "node" and ref.name in aggregation:
                log.warning("%s: output %r reads aggregation node %r; dropped, as pf does", label, name, ref.name)
                continue
        kept[name] = output
    return kept
