"""What each node of a Prompt flow DAG flow does, in llmcorr: its code loaded and checked when the flow is planned,
and run as a traced step of its row.

    nodes = DagNodes(flow, connections, max_tokens=256)   # every tool imported, every template compiled, every
                                                          # connection resolved: one UserError line, before any row
    output = await nodes(node, inputs)                    # pf.graph's `RunNode`

- python: the file's `@tool` function (promptflow's `tool`, or llmcorr's stand-in for it), called with the node's
  inputs by name; a sync one runs in a worker thread (`llmcorr.chat` inside it reaches the run's LLM), an async one
  on the loop. An argument typed as a connection class gets that connection, built from its endpoint.
- prompt: the Jinja template rendered with the node's inputs: the text is its output. Templates render as pf renders
  them (an undefined variable is empty, not an error).
- llm: the template rendered with the inputs that are not model parameters, split into chat messages at role lines
  (`system:`, `# user:` …), sent through the run's scheduler and cache (the node's `connection` picks the endpoint;
  `deployment_name` and `model` are recorded, the endpoint decides the model), its answer's text is the output.
  Defaults as Prompt flow's llm tool: temperature 1.0; max_tokens, when the node gives none, the run's.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..pf import DagFlow, Node, NodeInputs, NodeType
from ..pf.compat import promptflow_names
from ..pf.connections import Connections, as_connection
from ..pf.model import shown
from ..pf.refs import Const
from ..prompts.render import PromptTemplate, load_template, parse_messages
from ..providers.base import Message
from ..tracing.spans import step_span, text_attribute
from .flows import achat, import_file
from .sync_calls import call_sync

# The llm tool's parameters (promptflow-tools `openai.py` / `aoai.py` `chat` and `completion`): every other input of
# an llm node is a template variable.
LLM_PARAMETERS = frozenset(
    {"connection", "prompt", "deployment_name", "model", "temperature", "top_p", "n", "stop", "max_tokens"}
    | {"presence_penalty"}
    | {"frequency_penalty", "logit_bias", "user", "function_call", "functions", "response_format", "seed", "tools"}
    | {"tool_choice", "detail", "suffix", "echo", "best_of", "logprobs", "stream"}
)
LLM_TEMPERATURE = 1.0  # pf's llm tool's default


def is_tool(obj: Any) -> bool:
    """Marked by `@tool`: llmcorr's stand-in marks `__llmcorr_tool__`, promptflow's own sets `__tool`."""
    return inspect.isfunction(obj) and (getattr(obj, "__llmcorr_tool__", False) or hasattr(obj, "__tool"))


@dataclass(frozen=True)
class Tool:
    """A python node's function, and what calling it needs, read once when the flow loads."""

    fn: Callable[..., Any]
    params: Mapping[str, inspect.Parameter]
    connections: Mapping[str, Any]  # parameter -> its connection class, for the parameters typed as one
    is_async: bool


class DagNodes:
    """The executable nodes of one flow (its per-row and aggregation nodes alike)."""

    def __init__(self, flow: DagFlow, connections: Connections, max_tokens: int) -> None:
        self.flow = flow
        self.max_tokens = max_tokens
        self.label = shown(flow.file)
        self.tools: dict[str, Tool] = {}
        self.templates: dict[str, PromptTemplate] = {}
        self.endpoints: dict[str, str | None] = {}  # an llm node's endpoint (None: any of the run's)
        self._connections = connections
        for folder in self._import_folders():
            if folder not in sys.path:
                sys.path.insert(0, folder)  # a tool imports the flow's other modules, as under pf
        for node in flow.nodes:
            self._load(node)

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to a Ray worker as what it is loaded from: the worker imports the tools and compiles the templates
        again, from the same files (compiled templates and a file's module do not travel)."""
        return (_loaded, (self.flow, self._connections, self.max_tokens))

    def _import_folders(self) -> list[str]:
        folders = [str(self.flow.dir)]
        folders += [str((self.flow.dir / include).resolve().parent) for include in self.flow.additional_includes]
        return list(dict.fromkeys(folders))

    def _where(self, node: Node) -> str:
        return f"{self.label}: node {node.name!r}"

    def _load(self, node: Node) -> None:
        where = self._where(node)
        if not node.supported:
            what = node.source.type.value if node.source is not None and node.type is not None else node.type
            raise UserError(f"{where}: {what} nodes are not supported (llmcorr runs python, prompt and llm nodes)")
        file = self.flow.source_file(node)
        if file is None:
            path = node.source.path if node.source is not None else None
            raise UserError(f"{where}: source file {path!r} not found beside the flow")
        if node.type == NodeType.PYTHON:
            self.tools[node.name] = self._tool(node, file)
            return
        self.templates[node.name] = load_template(file, strict=False)  # as pf renders: undefined is empty
        if node.type == NodeType.LLM:
            if node.api not in (None, "chat", "completion"):
                raise UserError(f"{where}: api {node.api!r}: expected chat or completion")
            self.endpoints[node.name] = self._connections.endpoint(node.connection, where) if node.connection else None

    def _tool(self, node: Node, file: Path) -> Tool:
        where = self._where(node)
        module = import_file(file, where)
        tools = [obj for obj in vars(module).values() if is_tool(obj) and obj.__module__ == module.__name__]
        if len(tools) != 1:
            found = f"{len(tools)}: {', '.join(t.__name__ for t in tools)}" if tools else "none"
            raise UserError(f"{where}: {shown(file)} must hold one @tool function (found {found})")
        fn = tools[0]
        params = inspect.signature(fn).parameters
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        for name in node.inputs:
            if name not in params and not takes_any:
                raise UserError(f"{where}: input {name!r}: {fn.__name__}() in {shown(file)} has no such parameter")
        for name, p in params.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty or name in node.inputs:
                continue
            raise UserError(f"{where}: {fn.__name__}() in {shown(file)} needs input {name!r}, which the node lacks")
        hints = _hints(fn)
        typed = {name: hint for name, hint in hints.items() if name in params and hasattr(hint, "from_endpoint")}
        for name, value in node.inputs.items():  # connections named literally: resolved now, before any row
            if name in typed and isinstance(value, Const) and isinstance(value.value, str):
                self._connections.endpoint(value.value, f"{where} input {name!r}")
        return Tool(fn, params, typed, inspect.iscoroutinefunction(fn))

    async def __call__(self, node: Node, inputs: NodeInputs) -> Any:
        attributes = {"llmcorr.node": node.name, "llmcorr.node_type": str(node.type), "llmcorr.input": ""}
        attributes["llmcorr.input"] = text_attribute(inputs.values)
        with step_span(f"node {node.name}", attributes) as span:
            output = await self._run(node, inputs)
            if span is not None:
                span.set_attribute("llmcorr.output", text_attribute(output))
            return output

    async def _run(self, node: Node, inputs: NodeInputs) -> Any:
        if node.type == NodeType.PYTHON:
            tool = self.tools[node.name]
            kwargs = inputs.for_parameters(tool.params)
            if tool.connections:  # a connection's name becomes the connection, built from its endpoint
                where = self._where(node)
                kwargs = {
                    name: as_connection(tool.connections[name], value, f"{where} input {name!r}")
                    if name in tool.connections
                    else value
                    for name, value in kwargs.items()
                }
            if tool.is_async:
                return await tool.fn(**kwargs)
            return await call_sync(tool.fn, **kwargs)  # the row's context (its LLM, its span) goes along
        template = self.templates[node.name]
        if node.type == NodeType.PROMPT:
            return template.text(**inputs.values)
        return await self._llm(node, template, inputs.values)

    async def _llm(self, node: Node, template: PromptTemplate, values: dict[str, Any]) -> str:
        variables = {k: v for k, v in values.items() if k not in LLM_PARAMETERS}
        text = template.text(**variables)
        messages = [Message("user", text)] if node.api == "completion" else parse_messages(text, str(template.path))
        stop = values.get("stop")
        return await achat(
            messages,
            max_tokens=int(values["max_tokens"]) if values.get("max_tokens") else self.max_tokens,
            temperature=float(values["temperature"]) if values.get("temperature") is not None else LLM_TEMPERATURE,
            endpoint=self.endpoints[node.name],
            stop=[stop] if isinstance(stop, str) else (list(stop) if stop else None),
        )


def _loaded(flow: DagFlow, connections: Connections, max_tokens: int) -> DagNodes:
    """A flow's nodes loaded where they are unpickled, with Prompt flow's names and the flow's connections, as
    `plan_dag` loads them."""
    with connections.active(), promptflow_names():
        return DagNodes(flow, connections, max_tokens)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return dict(inspect.get_annotations(fn, eval_str=True))
    except Exception:  # an annotation that does not evaluate: not a connection, then
        return {}
