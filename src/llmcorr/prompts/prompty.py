"""Prompty files (`.prompty`), as Prompt flow writes them, loaded unchanged.

A Prompty file is YAML front matter between `---` lines — name, description, model (api, configuration,
parameters), inputs (with types and defaults), sample — followed by a Jinja body with `system:` / `user:` /
`assistant:` role markers. `${env:VAR}` values are read from the environment, except keys: a key is kept as the
*name* of its variable and never read into memory here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import TemplateError
from ..providers.base import GenParams, Message
from .render import PromptTemplate, compile_template, read_source

_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
SAMPLING_KEYS = ("max_tokens", "temperature", "seed", "stop")


def _resolve_env(value: Any, key: str = "") -> Any:
    """${env:VAR} → the variable's value; for keys, ${env:VAR} → {"env": VAR} (the key stays in the env)."""
    if isinstance(value, dict):
        return {k: _resolve_env(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, key) for v in value]
    if isinstance(value, str) and (match := _ENV_REF.match(value.strip())):
        if "key" in key.lower():
            return {"env": match.group(1)}
        return os.environ.get(match.group(1), value)
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

    def render(self, inputs: dict[str, Any], where: str = "inputs") -> list[Message]:
        return self.template.render(**self.resolve_inputs(inputs, where))


def load_prompty(path: str | Path) -> Prompty:
    """Load a `.prompty` file; bad YAML or Jinja names the file and line."""
    path = Path(path)
    return parse_prompty(read_source(path, "prompt"), path)


def parse_prompty(text: str, path: Path) -> Prompty:
    """A Prompty file's text, as if read from `path` (errors name it; includes resolve beside it)."""
    match = _FRONT.match(text)
    if not match:
        raise TemplateError(f"{path}:1: expected YAML front matter between '---' lines")
    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1  # +1 for the opening '---', +1 for 1-based lines
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise TemplateError(f"{path}:{line}: front matter is not valid YAML: {problem}") from None
    if not isinstance(front, dict):
        raise TemplateError(f"{path}:2: front matter must be a mapping of keys to values")
    front = _resolve_env(front)
    body = text[match.end() :]
    offset = text[: match.end()].count("\n")
    model = front.get("model") or {}
    inputs = front.get("inputs") or {}
    if not isinstance(model, dict) or not isinstance(inputs, dict):
        raise TemplateError(f"{path}: 'model' and 'inputs' must be mappings")
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


def _sample(sample: Any, path: Path) -> dict[str, Any]:
    """`sample:` is a mapping, or the name of a JSON file beside the prompty."""
    if sample is None:
        return {}
    if isinstance(sample, dict):
        return sample
    if isinstance(sample, str):
        file = path.parent / sample.removeprefix("${file:").removesuffix("}")
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TemplateError(f"{path}: sample file {file}: {exc}") from None
        if isinstance(loaded, dict):
            return loaded
    raise TemplateError(f"{path}: 'sample' must be a mapping or a JSON file name")
