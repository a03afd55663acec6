"""A Prompt flow DAG flow (flow.dag.yaml) as typed data: its inputs, outputs, nodes and node variants.

The shapes follow promptflow-core `contracts/flow.py` (`Flow`, `Node`, `ToolSource`, `ActivateCondition`,
`FlowInputDefinition`, `FlowOutputDefinition`, `NodeVariants`). `dag.py` reads a file into these; `graph.py` runs them.
A `DagFlow` is only ever built valid: its references point at things that exist, its graph has no cycle, and its
`nodes` are in an order that runs (every node after the nodes it reads).
"""

from __future__ import annotations

import functools
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .refs import Reference, Value


class ValueType(StrEnum):
    """A flow input's or output's declared type (pf: `contracts/tool.py` `ValueType`)."""

    STRING = "string"
    INT = "int"
    DOUBLE = "double"
    BOOL = "bool"
    LIST = "list"
    OBJECT = "object"
    IMAGE = "image"
    FILE_PATH = "file_path"
    SECRET = "secret"
    PROMPT_TEMPLATE = "prompt_template"
    ASSISTANT_DEFINITION = "assistant_definition"


class NodeType(StrEnum):
    """What a node runs (pf: `ToolType`). llmcorr runs `python`, `prompt` and `llm` nodes; the others load, so a
    flow can be inspected, and are listed by `DagFlow.unsupported`."""

    PYTHON = "python"
    PROMPT = "prompt"
    LLM = "llm"
    CUSTOM_LLM = "custom_llm"
    CSHARP = "csharp"
    ACTION = "action"


SUPPORTED_TYPES = frozenset({NodeType.PYTHON, NodeType.PROMPT, NodeType.LLM})


class SourceType(StrEnum):
    """Where a node's code comes from: a file of the flow (`code`) or an installed tool package."""

    CODE = "code"
    PACKAGE = "package"
    PACKAGE_WITH_PROMPT = "package_with_prompt"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FlowInput(_Model):
    """One of the flow's inputs: a row's column (or a default) that nodes read as `${inputs.NAME}`."""

    type: ValueType
    default: Any = None  # None: no default (pf: `apply_default_value_for_input` skips None)
    description: str = ""
    enum: list[Any] | None = None
    is_chat_input: bool = False
    is_chat_history: bool | None = None


class FlowOutput(_Model):
    """One of the flow's outputs: a column of each row's result."""

    type: ValueType
    reference: Value
    description: str = ""
    evaluation_only: bool = False
    is_chat_output: bool = False


class Source(_Model):
    """A node's code: `{type: code, path: FILE}` relative to the flow's folder, or `{type: package, tool: NAME}`."""

    type: SourceType = SourceType.CODE
    path: str | None = None
    tool: str | None = None


class Activate(_Model):
    """`activate: {when: ${node.output}, is: VALUE}`: the node runs only where `when` equals `is`, else it is
    bypassed (its output is None)."""

    when: Value
    is_: Any = Field(alias="is")


class Node(_Model):
    """One step of the flow. `inputs` are the keyword arguments it is called with, literal or referenced."""

    name: str
    type: NodeType | None = None  # None only on a `use_variants` node, whose variant says it
    source: Source | None = None
    inputs: dict[str, Value] = Field(default_factory=dict)
    connection: str | None = None  # recorded; which endpoint serves it is the run's choice
    api: str | None = None  # an llm node's `chat` or `completion`
    provider: str | None = None
    module: str | None = None
    tool: str | None = None
    comment: str = ""
    enable_cache: bool = False
    aggregation: bool = False  # runs once, after every row, over the lists of the rows' values
    use_variants: bool = False  # the node is one of `node_variants[name]`
    activate: Activate | None = None
    variant: str | None = None  # the variant id this node came from (set by variant resolution, never in YAML)

    @property
    def supported(self) -> bool:
        """Whether llmcorr can run it: a python, prompt or llm node whose source is a file of the flow."""
        return self.type in SUPPORTED_TYPES and self.source is not None and self.source.type == SourceType.CODE

    def references(self) -> list[tuple[str, Reference]]:
        """Every reference the node makes, with where: (input name, ref), and ("activate", ref) for its condition."""
        found = [(name, v) for name, v in self.inputs.items() if isinstance(v, Reference)]
        if self.activate is not None and isinstance(self.activate.when, Reference):
            found.append(("activate", self.activate.when))
        return found

    def depends_on(self) -> set[str]:
        """The nodes this one waits for: those its inputs or its activate condition read."""
        return {ref.name for _, ref in self.references() if ref.source == "node"}


class NodeVariant(_Model):
    """One variant of a node (pf `--variant ${node.variant_id}` picks it)."""

    node: Node
    description: str = ""


class NodeVariants(_Model):
    """The variants of one `use_variants` node, and which runs by default."""

    default_variant_id: str
    variants: dict[str, NodeVariant]


class DagFlow(_Model):
    """A loaded, validated DAG flow. `nodes` are in an order that runs, with each `use_variants` node replaced by its
    selected variant (`variant`, else each node's default); `declared` are the nodes as the file lists them."""

    file: Path  # the flow.dag.yaml, absolute
    name: str
    inputs: dict[str, FlowInput]
    outputs: dict[str, FlowOutput]
    nodes: tuple[Node, ...]
    declared: tuple[Node, ...]
    node_variants: dict[str, NodeVariants] = Field(default_factory=dict)
    additional_includes: tuple[str, ...] = ()  # recorded, and searched for node sources (pf copies them in)
    environment_variables: dict[str, Any] = Field(default_factory=dict)
    variant: str | None = None  # the `${node.variant_id}` selected, if any

    @property
    def dir(self) -> Path:
        """The flow's folder: node sources are relative to it."""
        return self.file.parent

    def node(self, name: str) -> Node:
        """The node called `name` (KeyError if none)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def unsupported(self) -> tuple[Node, ...]:
        """Nodes llmcorr cannot run (csharp, custom_llm, a packaged tool): a run of this flow must refuse them."""
        return tuple(node for node in self.nodes if not node.supported)

    @property
    def aggregation_nodes(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.aggregation)

    def aggregation_refs(self) -> tuple[Reference, ...]:
        """The references from aggregation nodes to per-row nodes: each row records their values, and the
        aggregation nodes get the list of them (pf: `get_aggregation_inputs_properties`)."""
        per_row = {node.name for node in self.nodes if not node.aggregation}
        found: dict[str, Reference] = {}
        for node in self.aggregation_nodes:
            for _, ref in node.references():
                if ref.source == "node" and ref.name in per_row:
                    found.setdefault(ref.key, ref)
        return tuple(found.values())

    def source_file(self, node: Node) -> Path | None:
        """The file a `code` node runs, if it exists: in the flow's folder, else brought in by an
        `additional_includes` entry (pf copies `../shared/x.py` in as `x.py`, `../lib` as `lib/...`)."""
        if node.source is None or node.source.type != SourceType.CODE or not node.source.path:
            return None
        rel = Path(node.source.path)
        here = self.dir / rel
        if here.is_file():
            return here
        for include in self.additional_includes:
            brought = (self.dir / include).resolve()
            if rel.parts and brought.name == rel.parts[0]:
                candidate = brought.parent / rel
                if candidate.is_file():
                    return candidate
        return None


def shown(path: Path) -> str:
    """A path as messages show it: relative to the working folder when it is under it."""
    return _shown(path, os.getcwd())


@functools.lru_cache(maxsize=1024)
def _shown(path: Path, cwd: str) -> str:  # every row of a run names its flow: resolved once
    try:
        return str(path.resolve().relative_to(Path(cwd).resolve()))
    except ValueError:
        return str(path)
