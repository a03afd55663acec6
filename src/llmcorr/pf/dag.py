"""Read a Prompt flow DAG flow (a folder with flow.dag.yaml, or the file itself) into a validated `DagFlow`.

    flow = load_dag("flows/web-classification")                  # each use_variants node: its default variant
    flow = select_variant(flow, "${summarize_text_content.variant_1}")   # as `pf run --variant`
    flow = override_nodes(flow, {"classify.connection": "azure"})      # as a run's `connections:`

Everything a user can get wrong in the file is a `UserError` here, one line naming the file and the node, before
any row runs: a missing file, bad YAML, an unknown key or type, a malformed or dangling reference, a duplicate
node, a cycle, a per-row node reading an aggregation node, a missing source file (checks.py has the graph rules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import UserError
from .checks import resolve
from .model import DagFlow, FlowInput, FlowOutput, Node, NodeType, NodeVariant, NodeVariants, shown
from .refs import Const, Reference, parse_value

DAG_FILE = "flow.dag.yaml"

# The keys pf reads or its schema allows (promptflow-devkit `schemas/_flow.py`, promptflow-core `contracts/flow.py`);
# anything else is most likely a typo, e.g. `activte:` would silently run a node meant to be conditional.
_TOP_KEYS = frozenset(
    {"$schema", "id", "name", "version", "description", "display_name", "tags", "type", "language", "environment"}
    | {"environment_variables", "message_format", "inputs", "outputs", "nodes", "node_variants", "additional_includes"}
)
_INPUT_KEYS = frozenset({"type", "default", "description", "enum", "is_chat_input", "is_chat_history"})
_OUTPUT_KEYS = frozenset({"type", "reference", "description", "evaluation_only", "is_chat_output"})
_NODE_KEYS = frozenset(
    {"name", "type", "source", "inputs", "connection", "api", "provider", "module", "tool", "comment"}
    | {"enable_cache", "aggregation", "reduce", "use_variants", "activate"}
)
_SOURCE_KEYS = frozenset({"type", "path", "tool"})
_VARIANT_SPEC = re.compile(r"\$\{([^.]+)\.([^}]+)\}")  # pf: `parse_variant`

M = TypeVar("M", bound=BaseModel)


class _Yaml12Loader(yaml.SafeLoader):
    """pyyaml reads YAML 1.1, where `yes`, `no`, `on` and `off` are booleans; pf reads flow files with ruamel's
    YAML 1.2, where they are text. An `activate: {is: yes}` must compare with the text "yes", as in pf."""


# Its resolvers: SafeLoader's, less the YAML 1.1 booleans, plus YAML 1.2's (copied, so SafeLoader is unchanged).
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_dag(path: str | Path) -> DagFlow:
    """The flow in `path` (a folder holding flow.dag.yaml, or a .yaml file), validated, each `use_variants` node
    replaced by its default variant. UserError, one line, for anything wrong in it."""
    file = _flow_file(Path(path))
    label = shown(file)
    data = _mapping(_read(file), label, "the file", "a mapping with inputs, outputs and nodes")
    _known(data, _TOP_KEYS, label, "the file")
    inputs = {
        str(name): _model(FlowInput, _mapping(raw, label, f"input {name!r}"), _INPUT_KEYS, label, f"input {name!r}")
        for name, raw in _mapping(data.get("inputs") or {}, label, "inputs").items()
    }
    raw_nodes = data.get("nodes") or []
    if not isinstance(raw_nodes, list):
        raise UserError(f"{label}: nodes: expected a list of nodes")
    nodes = tuple(_node(raw, label, f"nodes[{index}]") for index, raw in enumerate(raw_nodes))
    outputs = {
        str(name): _output(raw, label, f"output {name!r}")
        for name, raw in _mapping(data.get("outputs") or {}, label, "outputs").items()
    }
    includes = data.get("additional_includes") or []
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise UserError(f"{label}: additional_includes: expected a list of paths")
    draft = DagFlow(
        file=file.resolve(),
        name=str(data.get("name") or file.parent.name),
        inputs=inputs,
        outputs=outputs,
        nodes=nodes,
        declared=nodes,
        node_variants=_variants(data.get("node_variants") or {}, label),
        additional_includes=tuple(includes),
        environment_variables=dict(_mapping(data.get("environment_variables") or {}, label, "environment_variables")),
    )
    return resolve(draft, {})


def select_variant(flow: DagFlow, variant: str) -> DagFlow:
    """The flow with one node's variant selected, written as pf's `--variant`: `${NODE.VARIANT_ID}`; the other
    `use_variants` nodes keep their default. UserError for an unknown node or variant."""
    label = shown(flow.file)
    match = _VARIANT_SPEC.fullmatch(variant.strip().strip("'\""))
    if match is None:
        raise UserError(f"{label}: variant {variant!r}: expected ${{NODE.VARIANT_ID}}, e.g. ${{summarize.variant_1}}")
    name, wanted = match.groups()
    declared = {node.name: node for node in flow.declared}
    if name not in declared:
        raise UserError(f"{label}: variant {variant}: the flow has no node {name!r} (nodes: {', '.join(declared)})")
    if not declared[name].use_variants:
        raise UserError(f"{label}: node {name!r}: has no variants to select (it does not set use_variants: true)")
    choices = flow.node_variants[name].variants  # present: the flow was resolved with it
    if wanted not in choices:
        raise UserError(f"{label}: node {name!r}: no variant {wanted!r} (variants: {', '.join(choices)})")
    return resolve(flow, {name: wanted}).model_copy(update={"variant": f"${{{name}.{wanted}}}"})


def override_nodes(flow: DagFlow, overrides: Mapping[str, Any]) -> DagFlow:
    """The flow with node settings overridden, as pf's run `connections:` and `--connections NODE.KEY=VALUE` do
    (`_apply_node_overrides`): on an llm node, `connection` replaces the node's connection; any other key (an llm
    node's `deployment_name` or `model`, a python node's connection input) becomes that input's literal value.
    UserError, one line, for a key that is not NODE.KEY or names no node."""
    label = shown(flow.file)
    nodes = {node.name: node for node in flow.nodes}
    changed: dict[str, Node] = {}
    for key, value in overrides.items():
        name, dot, field = str(key).partition(".")
        if not dot or not name or not field or "." in field:
            raise UserError(f"{label}: override {key!r}: expected NODE.KEY, e.g. classify.connection")
        if name not in nodes:
            raise UserError(f"{label}: override {key!r}: the flow has no node {name!r} (nodes: {', '.join(nodes)})")
        node = changed.get(name, nodes[name])
        if field == "connection" and node.type == NodeType.LLM:
            changed[name] = node.model_copy(update={"connection": str(value)})
        else:
            changed[name] = node.model_copy(update={"inputs": {**node.inputs, field: Const(value=value)}})
    if not changed:
        return flow
    return flow.model_copy(update={"nodes": tuple(changed.get(node.name, node) for node in flow.nodes)})


def _flow_file(path: Path) -> Path:
    if path.is_dir():
        if not (path / DAG_FILE).is_file():
            raise UserError(f"{shown(path)}: no {DAG_FILE} in this folder")
        return path / DAG_FILE
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such flow file or folder")
    return path


def _read(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{shown(file)}: not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{shown(file)}: cannot be read ({err.strerror or err})") from None
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "cannot be parsed"
        raise UserError(f"{shown(file)}: not valid YAML: {problem}{where}") from None


def _node(raw: Any, label: str, where: str, variant_of: str | None = None) -> Node:
    """One node of `nodes` (or, `variant_of` set, the `node:` of one of that node's variants, which has no name)."""
    data = dict(_mapping(raw, label, where))
    if variant_of is not None:
        data["name"] = variant_of
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{label}: {where}: expected a name")
    if variant_of is None:
        where = f"node {name!r}"
    _known(data, _NODE_KEYS, label, where)
    inputs = _mapping(data.get("inputs") or {}, label, f"{where} inputs")
    data["inputs"] = {key: _value(value, label, f"{where} input {key!r}") for key, value in inputs.items()}
    if "reduce" in data:  # pf's older name for `aggregation`
        data["aggregation"] = bool(data.pop("reduce")) or bool(data.get("aggregation"))
    if data.get("source") is not None:
        _known(_mapping(data["source"], label, f"{where} source"), _SOURCE_KEYS, label, f"{where} source")
    if "activate" in data:
        activate = _mapping(data["activate"], label, f"{where} activate", "a mapping with when and is")
        _known(activate, frozenset({"when", "is"}), label, f"{where} activate")
        if "when" not in activate or "is" not in activate:
            raise UserError(f"{label}: {where} activate: expected both when and is")
        data["activate"] = {"when": _value(activate["when"], label, f"{where} activate when"), "is": activate["is"]}
    return _model(Node, data, None, label, where)


def _output(raw: Any, label: str, where: str) -> FlowOutput:
    data = dict(_mapping(raw, label, where))
    reference = data.get("reference")
    if reference is None or reference == "":
        raise UserError(f"{label}: {where}: expected a reference, e.g. reference: ${{node.output}}")
    data["reference"] = _value(reference, label, f"{where} reference")
    return _model(FlowOutput, data, _OUTPUT_KEYS, label, where)


def _variants(raw: Any, label: str) -> dict[str, NodeVariants]:
    found: dict[str, NodeVariants] = {}
    for name, spec in _mapping(raw, label, "node_variants").items():
        where = f"node_variants {name!r}"
        spec = _mapping(spec, label, where, "a mapping with default_variant_id and variants")
        _known(spec, frozenset({"default_variant_id", "variants"}), label, where)
        variants: dict[str, NodeVariant] = {}
        for vid, entry in _mapping(spec.get("variants") or {}, label, f"{where} variants").items():
            vwhere = f"{where} variant {vid!r}"
            entry = _mapping(entry, label, vwhere, "a mapping with node")
            _known(entry, frozenset({"node", "description"}), label, vwhere)
            if "node" not in entry:
                raise UserError(f"{label}: {vwhere}: expected node: {{type: ..., source: ..., inputs: ...}}")
            node = _node(entry["node"], label, vwhere, variant_of=str(name))
            variants[str(vid)] = NodeVariant(node=node, description=str(entry.get("description") or ""))
        default = spec.get("default_variant_id")
        found[str(name)] = NodeVariants(default_variant_id=str(default or ""), variants=variants)
    return found


def _value(raw: Any, label: str, where: str) -> Const | Reference:
    try:
        return parse_value(raw)
    except ValueError as err:
        raise UserError(f"{label}: {where}: {err}") from None


def _mapping(raw: Any, label: str, where: str, expected: str = "a mapping") -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise UserError(f"{label}: {where}: expected {expected}, found {type(raw).__name__}")
    return raw


def _known(data: Mapping[str, Any], allowed: frozenset[str], label: str, where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise UserError(f"{label}: {where}: unknown key {unknown[0]!r} (expected: {', '.join(sorted(allowed))})")


def _model(cls: type[M], data: Mapping[str, Any], allowed: frozenset[str] | None, label: str, where: str) -> M:
    """`data` as a `cls`, or one line saying which field is wrong and what it expected."""
    if allowed is not None:
        _known(data, allowed, label, where)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        if first["type"] == "missing":
            raise UserError(f"{label}: {where}: expected {field}") from None
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{label}: {where}: {field}: {message}") from None
