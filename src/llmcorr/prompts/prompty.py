"""Prompty files (`.prompty`), as Prompt flow writes them, loaded unchanged.

A Prompty file is YAML front matter between `---` lines — name, description, model (api, configuration,
parameters), inputs (with types and defaults), sample — followed by a Jinja body with `system:` / `user:` /
`assistant:` role markers. `${env:VAR}` values are read from the environment in `model.configuration` and
`model.parameters`, except keys: a key is kept as the *name* of its variable and never read into memory here.
Elsewhere only variables the user allows are read (`.env`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.io import show
from ..errors import TemplateError
from ..providers.base import GenParams, Message, out_of_bounds
from .env import PROMPTY_PLACES, EnvPolicy, current_policy
from .render import IncludeRefused, PromptTemplate, compile_template, inside, read_source

_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
# blank lines may come before the front matter, as Prompt flow allows
_FRONT = re.compile(r"\A(?:[ \t]*\r?\n)*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
SAMPLING_KEYS = ("max_tokens", "temperature", "seed", "stop")


class _EnvResolver:
    """${env:VAR} → the variable's value as `policy` allows (see `.env`); for keys, ${env:VAR} → {"env": VAR} (the
    key stays in the env); a reference not read stays as written.

    A YAML alias is one object however often it is referred to; `done` resolves it once, so aliases of aliases (a
    "billion laughs" file) cost what the file's text does, not what its expansion would."""

    def __init__(self, path: Path, policy: EnvPolicy) -> None:
        self.path, self.policy = path, policy
        self.done: dict[tuple[int, bool, bool], Any] = {}

    def front(self, front: Any) -> Any:
        if not isinstance(front, dict):
            return self.resolve(front, "", "")
        resolved = {k: self.resolve(v, str(k), str(k)) for k, v in front.items() if k != "model"}
        model = front.get("model")
        if isinstance(model, dict):  # Prompty's own places: model.configuration, model.parameters
            model = {
                k: self.resolve(v, str(k), f"model.{k}", prompty_place=k in PROMPTY_PLACES) for k, v in model.items()
            }
        elif "model" in front:
            model = self.resolve(model, "model", "model")
        if "model" in front:
            resolved["model"] = model
        return resolved

    def resolve(self, value: Any, key: str, where: str, prompty_place: bool = False) -> Any:
        if isinstance(value, dict | list):
            seen = (id(value), "key" in key.lower(), prompty_place)
            if seen in self.done:
                return self.done[seen]
            if isinstance(value, dict):
                # registered first: an alias may refer to itself
                resolved: dict[Any, Any] = self.done.setdefault(seen, {})
                resolved.update((k, self.resolve(v, str(k), f"{where}.{k}", prompty_place)) for k, v in value.items())
                return resolved
            items: list[Any] = self.done.setdefault(seen, [])
            items.extend(self.resolve(v, key, f"{where}[{i}]", prompty_place) for i, v in enumerate(value))
            return items
        if isinstance(value, str) and (match := _ENV_REF.match(value.strip())):
            if "key" in key.lower():
                return {"env": match.group(1)}
            read = self.policy.value(match.group(1), f"{self.path}: {where}", prompty_place)
            return value if read is None else read
        return value


@dataclass
class Prompty:
    """A loaded Prompty file."""

    path: Path
    name: str
    description: str
    model: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    sample: dict[str, Any]
    template: PromptTemplate
    front_matter: dict[str, Any] = field(default_factory=dict)

    @property
    def parameters(self) -> dict[str, Any]:
        params = self.model.get("parameters") or {}
        return params if isinstance(params, dict) else {}

    def gen_params(self, default: GenParams | None = None) -> GenParams:
        """Sampling parameters from the file's `model.parameters`, over llmcorr's defaults."""
        base = default or GenParams()
        p = self.parameters
        stop = p.get("stop")
        return GenParams(
            max_tokens=int(p.get("max_tokens", base.max_tokens)),
            temperature=float(p.get("temperature", base.temperature)),
            seed=int(p["seed"]) if p.get("seed") is not None else base.seed,
            stop=tuple(stop) if isinstance(stop, list) else ((stop,) if isinstance(stop, str) else base.stop),
        )

    def resolve_inputs(self, given: dict[str, Any], where: str = "inputs") -> dict[str, Any]:
        """Declared inputs from `given`, else their defaults; a declared input with neither is an error."""
        values = dict(given)
        for name, spec in self.inputs.items():
            if name in values:
                continue
            if isinstance(spec, dict) and "default" in spec:
                values[name] = spec["default"]
            else:
                declared = ", ".join(self.inputs) or "none"
                raise TemplateError(f"{self.path}: {where}: input {name!r} is missing (declared: {declared})")
        return values

    def render(self, inputs: dict[str, Any], where: str | None = None) -> list[Message]:
        """The messages for `inputs`; `where` names them (a data file's row) in errors."""
        values = self.resolve_inputs(inputs, where or "inputs")
        try:
            return self.template.render(**values)
        except TemplateError as exc:
            if where is None:
                raise
            raise TemplateError(f"{exc} ({where})") from None  # the row whose values it failed on


def load_prompty(path: str | Path, env: EnvPolicy | None = None) -> Prompty:
    """Load a `.prompty` file; bad YAML or Jinja names the file and line. `env`: which ${env:VAR} it may read (by
    default the innermost `allowing_env` block's policy)."""
    path = Path(path)
    return parse_prompty(read_source(path, "prompt"), path, env)


def parse_prompty(text: str, path: Path, env: EnvPolicy | None = None) -> Prompty:
    """A Prompty file's text, as if read from `path` (errors name it; includes resolve beside it)."""
    match = _FRONT.match(text)
    if not match:
        raise TemplateError(f"{path}:1: expected YAML front matter between '---' lines")
    try:
        front = _EnvResolver(path, env or current_policy()).front(yaml.safe_load(match.group(1)) or {})
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        first = text[: match.start(1)].count("\n") + 1  # the file's line where the YAML starts (after '---')
        line = mark.line + first if mark is not None else 1
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise TemplateError(f"{path}:{line}: front matter is not valid YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # a date such as 2024-13-45, or nesting deeper than PyYAML goes
        raise TemplateError(f"{path}: front matter is not valid YAML: {type(exc).__name__}: {exc}") from None
    if not isinstance(front, dict):
        start = text[: match.start(1)].count("\n") + 1
        raise TemplateError(f"{path}:{start}: front matter must be a mapping of keys to values")
    body = text[match.end() :]
    offset = text[: match.end()].count("\n")
    model = front.get("model") or {}
    inputs = front.get("inputs") or {}
    if not isinstance(model, dict) or not isinstance(inputs, dict):
        raise TemplateError(f"{path}: 'model' and 'inputs' must be mappings")
    _check_parameters(model.get("parameters"), path)
    return Prompty(
        path=path,
        name=str(front.get("name") or path.stem),
        description=str(front.get("description") or ""),
        model=model,
        inputs={str(k): (v if isinstance(v, dict) else {"type": v}) for k, v in inputs.items()},
        sample=_sample(front.get("sample"), path),
        template=compile_template(body, path, line_offset=offset),
        front_matter=front,
    )


def _integer(value: Any) -> int | None:
    """A whole number, also written as text (a ${env:VAR} value); not a bool, not 1.5."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # not a whole number, or more digits than Python converts
            return None
    return None


def _real(value: Any) -> float | None:
    """A finite number, also written as text; not a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and _ENV_REF.match(value.strip()) is not None


def _check_parameters(params: Any, path: Path) -> None:
    """`model.parameters`' sampling values, checked when the file loads: a bad one is one line naming it, never a
    traceback or a request the server refuses."""
    if params is None:
        return
    if not isinstance(params, dict):
        raise TemplateError(f"{path}: 'model.parameters' must be a mapping")

    def bad(key: str, expected: str) -> TemplateError:
        value = params[key]
        unread = " (an ${env:} reference left unread: unset, or the dashboard's preview, which reads none)"
        unread = unread if _is_ref(value) else ""
        return TemplateError(f"{path}: model.parameters.{key}: expected {expected}, got {show(value)}{unread}")

    def bounded(key: str, value: Any) -> None:  # the bounds every request's parameters keep
        expected = out_of_bounds(key, value)
        if expected is not None:
            raise bad(key, expected)

    max_tokens = _integer(params.get("max_tokens", 1))
    if max_tokens is None or max_tokens < 1:
        raise bad("max_tokens", "a whole number >= 1")
    bounded("max_tokens", max_tokens)
    temperature = _real(params.get("temperature", 0))
    if temperature is None or temperature < 0:
        raise bad("temperature", "a number >= 0")
    bounded("temperature", temperature)
    if params.get("seed") is not None and _integer(params["seed"]) is None:
        raise bad("seed", "a whole number")
    bounded("seed", _integer(params.get("seed")))
    for key in ("top_p", "n"):  # not sent by llmcorr, but a file meant for other tools should not hold nonsense
        if params.get(key) is not None:
            bounded(key, _integer(params[key]) if key == "n" else _real(params[key]))
    stop = params.get("stop")
    strings = isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    if not (stop is None or isinstance(stop, str) or strings):
        raise bad("stop", "a string or a list of strings")


def _sample(sample: Any, path: Path) -> dict[str, Any]:
    """`sample:` is a mapping, or the name of a JSON file beside the prompty."""
    if sample is None:
        return {}
    if isinstance(sample, dict):
        return sample
    if isinstance(sample, str):
        name = sample.removeprefix("${file:").removesuffix("}")
        try:
            file = inside(path.parent, name, "sample file")
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except IncludeRefused as exc:
            raise TemplateError(f"{path}: sample: {exc.message}") from None
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: not JSON, not UTF-8, a NUL in the name
            raise TemplateError(f"{path}: sample file {show(name)}: {type(exc).__name__}: {exc}") from None
        if isinstance(loaded, dict):
            return loaded
    raise TemplateError(f"{path}: 'sample' must be a mapping or a JSON file name")
