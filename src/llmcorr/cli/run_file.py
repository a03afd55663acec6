"""`llmcorr run --file run.yml`: Prompt flow's run files (`pf run create --file run.yml`) read as `llmcorr run`'s
options. Paths in the file are relative to the file's folder, as pf reads them; options on the command line win.

    flow: ../web-classification           # the flow: a folder, a flow.dag.yaml / flow.flex.yaml, a .prompty …
    data: ../data.jsonl
    column_mapping: {url: ${data.url}}    # --column-mapping / --map
    variant: ${summarize.variant_1}       # --variant
    run: base-run                         # --run: an llmcorr run's id or name to chain on
    init: {model: m}                      # --init: a flex flow class's arguments
    connections: {classify: {connection: azure, deployment_name: gpt-4o}}   # --override classify.connection=azure …
    name / display_name                   # --name
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError

# pf's Run schema keys that llmcorr has no use for, but which a run file may hold: accepted and left alone
_IGNORED = ("$schema", "description", "tags", "resources", "identity", "properties", "environment_variables")


class RunFile(BaseModel):
    """A run file's options, paths resolved against its folder."""

    model_config = ConfigDict(extra="forbid")
    flow: str | None = None
    data: str | None = None
    column_mapping: dict[str, str] = Field(default_factory=dict)
    variant: str | None = None
    run: str | None = None
    init: dict[str, Any] | None = None
    name: str | None = None
    display_name: str | None = None
    connections: dict[str, dict[str, Any]] = Field(default_factory=dict)  # node -> {connection: …, input: value}

    def overrides(self) -> dict[str, Any]:
        """`connections:` as --override's NODE.KEY → value."""
        return {f"{node}.{key}": value for node, given in self.connections.items() for key, value in given.items()}


def read_run_file(path: Path) -> RunFile:
    """The run file at `path`, as options; one UserError line naming the file and key for anything wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"--file {path}: cannot be read ({err.strerror or err})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"--file {path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"--file {path}: expected a mapping of run options (flow, data, column_mapping …)")
    values = {str(k): v for k, v in raw.items() if k not in _IGNORED}
    for key in ("column_mapping",):
        if isinstance(values.get(key), dict):
            values[key] = {str(k): str(v) for k, v in values[key].items()}
    try:
        found = RunFile.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            known = ", ".join([*RunFile.model_fields, *_IGNORED])
            raise UserError(f"--file {path}: unknown key {field!r} (known: {known})") from None
        raise UserError(f"--file {path}: {field}: {first['msg']}") from None
    here = path.parent
    return found.model_copy(
        update={
            "flow": _beside(here, found.flow),
            "data": _beside(here, found.data),
        }
    )


def _beside(folder: Path, value: str | None) -> str | None:
    """A path in the file, relative to the file's folder (a module reference, `module:name`, left as it is)."""
    if value is None or Path(value).is_absolute() or (folder / value).exists():
        return None if value is None else str(folder / value)
    module, sep, name = value.rpartition(":")
    if sep and module.endswith(".py"):
        return f"{folder / module}:{name}"
    return value if sep else str(folder / value)
