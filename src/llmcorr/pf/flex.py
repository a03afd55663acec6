"""Prompt flow's flex flows: a folder with `flow.flex.yaml` naming a Python function or class as its entry.

    $schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
    entry: flow:ChatFlow                  # module:name, the module found in the flow's folder (or `code:`)
    init:                                 # a class entry's __init__ arguments: types, defaults
      max_total_token: {type: int, default: 1024}
    inputs: {question: {type: string, default: "What is ChatGPT?"}}
    sample: {init: {...}, inputs: {...}}  # `sample.init` is the init when none is given, as in pf
    environment_variables: {AZURE_OPENAI_ENDPOINT: "${open_ai_connection.api_base}"}

`load_flex(path)` reads it (a bad file is one `UserError` line naming it); runs/flows.py `load_flow` imports the
entry with the flow's folder on sys.path and builds it. `environment_variables` are set while the flow loads and
while its rows run, and put back afterwards; a `${CONNECTION.FIELD}` value is read from the endpoint the connection
names (api_key, api_base/base_url, api_version, model). A relative path inside the flow's code is still read from the
working directory (llmcorr does not change it); `Prompty.load` of a relative source reads from the flow's folder.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError
from ..keys import key_value
from .compat.connections import CONNECTIONS
from .compat.core import MODEL_CONFIGURATIONS
from .connections import Connections, as_connection, current
from .dag import _read
from .model import shown

FLEX_FILES = ("flow.flex.yaml", "flow.flex.yml")
FLEX_SUFFIXES = (".flex.yaml", ".flex.yml")
DAG_FILES = ("flow.dag.yaml", "flow.dag.yml")
_ENTRY = re.compile(r"^[A-Za-z0-9_.]+:[A-Za-z0-9_]+$")  # pf's FlowEntryRegex.Python
_CONNECTION_REF = re.compile(r"^\$\{([^.{}:]+)\.([^.{}]+)\}$")  # ${connection.field}
_FILE_REF = re.compile(r"^\$\{file:(.+)\}$")
VALUE_TYPES = ("string", "int", "double", "bool", "list", "object")
INIT_TYPES = (
    *VALUE_TYPES,
    "AzureOpenAIModelConfiguration",
    "OpenAIModelConfiguration",
    *(f"{c}Connection" for c in ("AzureOpenAI", "OpenAI", "Serverless", "Custom", "AzureContentSafety")),
    *(f"{c}Connection" for c in ("Serp", "CognitiveSearch", "FormRecognizer", "AzureAIServices", "Qdrant")),
    "WeaviateConnection",
)


_folder: contextvars.ContextVar[Path | None] = contextvars.ContextVar("llmcorr_pf_flow_folder", default=None)


@contextmanager
def flow_folder(folder: Path | None) -> Iterator[None]:
    """Within this block, `current_folder()` is `folder`: a flex flow's, where Prompt flow would run it from."""
    token = _folder.set(folder)
    try:
        yield
    finally:
        _folder.reset(token)


def current_folder() -> Path | None:
    """The folder of the flex flow loading or running (a relative `Prompty.load` source is read from it)."""
    return _folder.get()


class FlexParameter(BaseModel):
    """An `inputs:` or `init:` entry."""

    model_config = ConfigDict(extra="forbid")

    type: str
    default: Any = None
    description: str | None = None
    is_chat_input: bool = False
    is_chat_history: bool = False


class FlexOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    description: str | None = None
    reference: str | None = None
    is_chat_output: bool = False


class FlexSpec(BaseModel):
    """flow.flex.yaml as Prompt flow's schema (FlexFlowSchema) allows it, plus `name`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str | None = Field(default=None, alias="$schema")
    entry: str
    init: dict[str, FlexParameter] = Field(default_factory=dict)
    inputs: dict[str, FlexParameter] = Field(default_factory=dict)
    outputs: dict[str, FlexOutput] = Field(default_factory=dict)
    sample: dict[str, Any] = Field(default_factory=dict)
    environment_variables: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    additional_includes: list[str] = Field(default_factory=list)
    code: str | None = None
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    type: str | None = None
    language: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class AttrDict(dict[str, Any]):
    """A dict whose keys are also attributes: a line's output as Prompt flow hands it to `__aggregate__`."""

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None


def line_result(output: Mapping[str, Any]) -> Any:
    """A row's stored output as `__aggregate__` gets it: an `AttrDict`, or the value a flow returned that was not a
    dict (stored as {"output": value}; a dict with only the key `output` is read the same way)."""
    if set(output) == {"output"}:
        return output["output"]
    return AttrDict(output)


def flex_file(ref: str | Path) -> Path | None:
    """The flow.flex.yaml a `llmcorr run` argument names (a folder holding one, or the file), else None (not a
    flex flow). A folder holding flow.dag.yaml is a DAG flow: a UserError here."""
    path = Path(ref)
    if path.is_dir():
        found = [path / name for name in FLEX_FILES if (path / name).is_file()]
        if any((path / name).is_file() for name in DAG_FILES):
            if found:
                raise UserError(f"{shown(path)}: holds both flow.dag.yaml and flow.flex.yaml; run one of the files")
            raise UserError(f"{shown(path)} is a DAG flow (flow.dag.yaml), not a flex flow")
        if not found:
            raise UserError(f"{shown(path)}: no flow.flex.yaml in this folder (a flex flow's file)")
        return found[0]
    name = path.name
    if name.endswith(FLEX_SUFFIXES):
        if not path.is_file():
            raise UserError(f"{shown(path)}: no such flow file")
        return path
    if name in DAG_FILES:
        raise UserError(f"{shown(path)} is a DAG flow (flow.dag.yaml), not a flex flow")
    return None


@dataclass
class FlexFlow:
    """A loaded flow.flex.yaml: where it is, what it says, and how its entry is imported and run."""

    path: Path  # the flow.flex.yaml, absolute
    spec: FlexSpec

    @property
    def label(self) -> str:
        return shown(self.path)

    @property
    def root(self) -> Path:
        """Where the entry's module is imported from: the flow's folder (or its `code:` folder)."""
        return (self.path.parent / self.spec.code).resolve() if self.spec.code else self.path.parent

    def import_entry(self) -> Any:
        """The entry's function or class, its module imported from `root` (a module of that name already imported
        from elsewhere — another flow's `flow.py` — is imported again from here)."""
        module_name, _, name = self.spec.entry.partition(":")
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        top = module_name.split(".")[0]
        loaded = getattr(sys.modules.get(top), "__file__", None)
        if loaded and not Path(loaded).resolve().is_relative_to(self.root):
            for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
                del sys.modules[key]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            why = exc.msg if isinstance(exc, ModuleNotFoundError) and exc.name == module_name else str(exc)
            where = f"{self.label}: entry {self.spec.entry}"
            raise UserError(f"{where}: {why} (imported from {shown(self.root)})") from None
        except SyntaxError as exc:
            at = f"{shown(Path(exc.filename))}:{exc.lineno}" if exc.filename else "its module"
            raise UserError(f"{self.label}: entry {self.spec.entry}: {exc.msg} ({at})") from None
        target = getattr(module, name, None)
        if target is None:
            raise UserError(f"{self.label}: entry {self.spec.entry}: module {module_name} has no {name!r}")
        return target

    def init_args(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """A class entry's init arguments: those given, else the file's `sample.init`; then `init:` defaults."""
        args = dict(given or {}) or dict(self.spec.sample.get("init") or {})
        for key, param in self.spec.init.items():
            if key not in args and param.default is not None and param.default != "":
                args[key] = param.default
        return args

    def input_defaults(self) -> dict[str, Any]:
        """The `inputs:` defaults a row without that column gets."""
        return {k: p.default for k, p in self.spec.inputs.items() if p.default is not None and p.default != ""}

    @contextmanager
    def environment(self) -> Iterator[None]:
        """`environment_variables` set within this block, and put back as they were after it."""
        values = {str(k): self._variable(str(k), v) for k, v in self.spec.environment_variables.items()}
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old

    def _variable(self, name: str, value: Any) -> str:
        if isinstance(value, dict | list):
            return json.dumps(value)
        text = str(value)
        match = _CONNECTION_REF.match(text.strip())
        if match is None:
            return text
        connection, field = match.groups()
        where = f"{self.label}: environment_variables.{name}"
        config = (current() or Connections.loose()).config(connection, where)
        if config is None:  # a run on a given provider: no endpoint to read it from
            return text
        fields = {
            "api_key": key_value(config.api_key_env) if config.api_key_env else None,
            "api_base": config.base_url,
            "base_url": config.base_url,
            "azure_endpoint": config.base_url,
            "api_version": config.api_version,
            "model": config.model,
            "azure_deployment": config.model,
        }
        if field not in fields:
            raise UserError(f"{where}: llmcorr reads no {field!r} from an endpoint (it reads {', '.join(fields)})")
        return fields[field] or ""


def load_flex(path: str | Path) -> FlexFlow:
    """flow.flex.yaml (or a folder holding it) as a `FlexFlow`; anything wrong in it is one line naming it."""
    file = (flex_file(path) or Path(path)).resolve()
    label = shown(file)
    data = _read(file)
    if not isinstance(data, dict):
        raise UserError(f"{label}: expected a mapping with an entry (entry: module:function)")
    unknown = sorted(str(k) for k in data if str(k) not in _KEYS)
    if unknown:
        raise UserError(f"{label}: unknown key {unknown[0]!r} (a flex flow has: {', '.join(sorted(_KEYS))})")
    try:
        spec = FlexSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise UserError(f"{label}: {where}: {first['msg']}") from None
    _check(spec, label, file.parent)
    return FlexFlow(file, spec)


_KEYS = frozenset(f.alias or n for n, f in FlexSpec.model_fields.items())


def _check(spec: FlexSpec, label: str, folder: Path) -> None:
    if spec.language not in (None, "python"):
        raise UserError(f"{label}: language: {spec.language}: llmcorr runs Python flows only")
    module = spec.entry.partition(":")[0]
    if not _ENTRY.match(spec.entry) or module.endswith(".py"):  # a module's name, as pf imports it, not a file's
        hint = f" (write {spec.entry.replace('.py:', ':')})" if module.endswith(".py") else ""
        raise UserError(f"{label}: entry: {spec.entry!r} is not module:name{hint}")
    for section, allowed in (("inputs", VALUE_TYPES), ("init", INIT_TYPES)):
        for name, param in getattr(spec, section).items():
            if param.type not in allowed:
                raise UserError(f"{label}: {section}.{name}: type {param.type!r} is not one of {', '.join(allowed)}")
    for key, value in list(spec.sample.items()):
        if key not in ("init", "inputs"):
            raise UserError(f"{label}: sample.{key}: a sample has init and inputs only")
        spec.sample[key] = _sample_value(value, folder, f"{label}: sample.{key}")
        if not isinstance(spec.sample[key], dict):
            raise UserError(f"{label}: sample.{key}: expected a mapping of names to values")


def _sample_value(value: Any, folder: Path, where: str) -> Any:
    """A sample's `${file:NAME}` (JSON, YAML or text, beside the flow file) read, as pf reads it."""
    match = _FILE_REF.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return value
    file = folder / match.group(1)
    if not file.is_file():
        raise UserError(f"{where}: no file {match.group(1)} beside the flow file")
    if file.suffix.lower() == ".json":
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"{where}: {shown(file)} is not JSON ({exc})") from None
    return _read(file) if file.suffix.lower() in (".yaml", ".yml") else file.read_text(encoding="utf-8")


def typed_init(cls: type, args: dict[str, Any], where: str) -> dict[str, Any]:
    """A class flow's init arguments as Prompt flow resolves them (`_resolve_init_kwargs`): one typed as a
    connection class gets the connection of that name (its endpoint's, pf/connections.py); one typed as a model
    configuration, given as a dict, becomes one. A connection either names is resolved now: an unknown one fails
    before any row runs. Annotations written as text count (`from __future__ import annotations`)."""
    try:
        params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    except (TypeError, ValueError):
        return args
    resolved = dict(args)
    for name, param in params.items():
        if name not in resolved:
            continue
        annotation = param.annotation
        kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        there = f"{where}: init {name}"
        if kind in CONNECTIONS:
            typed = annotation if hasattr(annotation, "from_endpoint") else CONNECTIONS[kind]
            if inspect.isclass(annotation) and not hasattr(annotation, "from_endpoint"):
                continue  # the real promptflow's class: its own connections, not llmcorr's to build
            resolved[name] = as_connection(typed, resolved[name], there)
        elif kind in MODEL_CONFIGURATIONS:
            value = resolved[name]
            if isinstance(value, dict):
                make = annotation if inspect.isclass(annotation) else MODEL_CONFIGURATIONS[kind]
                try:
                    value = make(**value)
                except TypeError as exc:
                    raise UserError(f"{there}: not a {kind}: {exc}") from None
            connection = getattr(value, "connection", None)
            if connection:
                (current() or Connections.loose()).endpoint(str(connection), there)
            resolved[name] = value
    return resolved
