"""The values of a flow.dag.yaml: literals and references (`${inputs.x}`, `${node.output}`, `${node.output.a.b}`).

Prompt flow's grammar, read in promptflow-core `contracts/flow.py` (`InputAssignment.deserialize`,
`deserialize_node_reference`, `FlowInputAssignment`) and `executor/_input_assignment_parser.py`
(`parse_node_property`):

    ${inputs.question}            a flow input (`${flow.question}` is the older spelling of the same)
    ${classify.output}            a node's output (`${classify}` alone means the same)
    ${classify.output.label}      a value inside it: a dict's key, else an attribute of the object
    ${search.output.hits[0]}      a list's item; `${n.output.a['b c']}` a key that is not a word
    anything else                 a literal: numbers, lists, and text that merely contains `${`

References are parsed once, when the flow loads, so a malformed one is an error before any row runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_FLOW_INPUT_PREFIXES = ("inputs.", "flow.")  # pf: FLOW_INPUT_PREFIXES; "flow." is kept for old flows
# One step of a property path: `.word`, `['key']` or `[0]` (pf: `property_pattern`, with the dots made explicit).
_STEP = re.compile(r"(?P<dot>\.)?(?:(?P<word>\w+)|\['(?P<key>[^']*)'\]|\[(?P<index>\d+)\])")


class Const(BaseModel):
    """A literal value, passed as written in the YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["literal"] = "literal"
    value: Any = None


class Reference(BaseModel):
    """A `${...}` reference: to a flow input (`source="inputs"`) or to a node's output, maybe a value inside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["reference"] = "reference"
    source: Literal["inputs", "node"]
    name: str  # the flow input's or the node's name
    subpath: str = ""  # as written after `.output.` (a node reference only)
    path: tuple[str | int, ...] = ()  # `subpath` parsed: keys/attributes (str) and list indexes (int)

    @property
    def key(self) -> str:
        """The reference in one canonical spelling (`${inputs.x}`, `${node.output}`, `${node.output.a.b}`): how a
        row records the values its aggregation nodes will read (pf: `InputAssignment.serialize`)."""
        if self.source == "inputs":
            return f"${{inputs.{self.name}}}"
        return f"${{{self.name}.output.{self.subpath}}}" if self.subpath else f"${{{self.name}.output}}"

    def __str__(self) -> str:
        return self.key


Value = Annotated[Const | Reference, Field(discriminator="kind")]


def parse_value(raw: Any) -> Const | Reference:
    """A YAML value as a literal or a reference; ValueError (one line) for a `${...}` that is not a valid reference.
    As in pf, only a whole string `${...}` is a reference."""
    if not (isinstance(raw, str) and raw.startswith("${") and raw.endswith("}") and len(raw) > 2):
        return Const(value=raw)
    inner = raw[2:-1].strip()
    if not inner:
        raise ValueError(f"{raw!r} is an empty reference (expected ${{inputs.NAME}} or ${{NODE.output}})")
    for prefix in _FLOW_INPUT_PREFIXES:
        if inner.startswith(prefix):
            return Reference(source="inputs", name=inner[len(prefix) :])
    node, dot, rest = inner.partition(".")
    if not dot or rest == "output":
        return Reference(source="node", name=node)
    if not rest.startswith("output."):
        raise ValueError(f"{raw!r}: expected ${{{node}.output}} or ${{{node}.output.KEY}} (only a node's output)")
    prop = rest[len("output.") :]
    try:
        return Reference(source="node", name=node, subpath=prop, path=parse_property(prop))
    except ValueError as err:
        raise ValueError(f"{raw!r}: {err}") from None


def parse_property(prop: str) -> tuple[str | int, ...]:
    """`a.b[0]['c d']` → ("a", "b", 0, "c d"); ValueError for anything else. pf's own parser skips what it cannot
    read; a typo here would only show as a wrong value at run time, so it is an error at load time instead."""
    steps: list[str | int] = []
    pos = 0
    while pos < len(prop):
        match = _STEP.match(prop, pos)
        dotted = match is not None and match["dot"] is not None
        # a step needs a dot before a word (`a.b`), never before the first (`.a`); `a[0]` needs none
        if match is None or (pos == 0 and dotted) or (pos > 0 and match["word"] is not None and not dotted):
            raise ValueError(f"cannot read the property path {prop!r} (expected keys like a.b, a[0] or a['b c'])")
        if match["word"] is not None:
            steps.append(match["word"])
        elif match["key"] is not None:
            steps.append(match["key"])
        else:
            steps.append(int(match["index"]))
        pos = match.end()
    if not steps:
        raise ValueError("an empty property path")
    return tuple(steps)


class PathError(LookupError):
    """A property path that does not fit the value it is applied to (a missing key, index or attribute)."""


def follow(value: Any, path: tuple[str | int, ...]) -> Any:
    """The value at `path` inside `value`, as pf's `parse_node_property` reads it: an int step indexes, a str step
    is a key of a mapping, else an attribute. PathError names the step that failed."""
    for step in path:
        try:
            value = value[step] if isinstance(step, int) or isinstance(value, Mapping) else getattr(value, step)
        except (KeyError, IndexError, TypeError, AttributeError):
            shown = f"[{step}]" if isinstance(step, int) else repr(step)
            raise PathError(f"has no {shown} (it is {_kind_of(value)})") from None
    return value


def _kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = ", ".join(repr(k) for k in list(value)[:8])
        return f"a dict with keys {keys}" if keys else "an empty dict"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return "None" if value is None else f"a {type(value).__name__}"
