"""What re-creates a run: the data's hash, the prompt's hash, the endpoint, the parameters, the seed, the version.

Every file a run names (data, prompt file, flow source, template, config, output, a local model) is recorded as an
absolute path, so `runs resume` and `runs rerun` work from any directory; `recorded_file` finds one again, or says in
one line which file is gone, where it was expected and which option points at its new place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, model_validator

from .._version import __version__
from ..data import as_frame
from ..errors import DataError, UserError
from ..store import RunRecord

if TYPE_CHECKING:
    from ..config import Config, EndpointConfig
    from ..scheduler import Scheduler
    from .estimate import Estimate

# Asked before anything is spent, with the estimate (None for a flow: its calls cannot be counted ahead); False
# cancels the run.
ConfirmFn = Callable[["Estimate | None", "Scheduler"], bool]


def data_sha256(data: str | Path | pd.DataFrame) -> str:
    """Hash of a data file's bytes, or of a DataFrame's contents."""
    digest = hashlib.sha256()
    if isinstance(data, pd.DataFrame):
        digest.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
        digest.update(",".join(map(str, data.columns)).encode())
    else:
        with Path(data).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def absolute(path: str | Path) -> str:
    """A path as a run records it: absolute, so the run can be resumed or rerun from any directory."""
    return str(Path(path).expanduser().resolve())


def recorded_file(label: str, recorded: str, what: str, option: str) -> Path:
    """A file a recorded run names, found again: an absolute path as it is, a relative one (a record made before
    paths were absolute) from the working directory. A file that is not there is one line: which file, where it
    was expected, and the option that points at its new place (`option`, e.g. "--data NEWPLACE")."""
    path = Path(recorded).expanduser()
    if path.is_file():
        return path
    where = str(path) if path.is_absolute() else f"{recorded} (relative to the run's folder; not in {Path.cwd()})"
    raise UserError(f"run {label}: its {what} is not at {where} (moved or deleted?); pass {option}")


def recorded_data(record: RunRecord, given: Any, keyword: str) -> Any:
    """The data a recorded run was made from: `given` again (a file, or a DataFrame passed as `keyword=`), else its
    recorded file found again; one line if it is missing or is not what the run was made from (its hash)."""
    spec = spec_of(record)
    if given is None:
        if spec.data == "DataFrame":
            raise UserError(f"run {record.label} was made from a DataFrame: pass it again ({keyword}=df)")
        given = recorded_file(record.label, spec.data, "data file", "--data NEWPLACE")
    elif isinstance(given, str | Path) and not Path(given).is_file():
        raise DataError(f"--data {given}: no such file")
    if data_sha256(Path(given) if isinstance(given, str | Path) else as_frame(given)[0]) != spec.data_sha256:
        raise UserError(f"run {record.label}: the data in {given} is not what the run was made from ({spec.data})")
    return given


def recorded_output(record: RunRecord) -> str | None:
    """The output file a recorded run was writing (a resume writes it again), if its folder is still there."""
    if not record.output_path:
        return None
    path = Path(record.output_path)
    if not path.parent.is_dir():
        raise UserError(
            f"run {record.label}: its output file {path} cannot be written again (folder {path.parent} is gone); "
            "pass -o NEWPLACE"
        )
    return str(path)


def config_source(config: Config) -> str | None:
    """The llmcorr.toml a run was made with, absolute (it may hold the store's location), or None."""
    return absolute(config.source) if config.source else None


def recorded_endpoints(options: KindOptions, config: Config) -> list[EndpointConfig]:
    """The endpoints a recorded run used (its spec's `endpoint_configs`: names, kinds, URLs, quotas, key variable
    names), for a resume or rerun. A URL is recorded without its `user:password@`: where this llmcorr.toml has the same
    endpoint at that URL with its credentials, that one is used, so the resume authenticates as the run did."""
    from ..config import EndpointConfig, without_userinfo

    current = {e.name: e for e in config.endpoints}
    out = []
    for fields in options.endpoint_configs:
        recorded = EndpointConfig(**fields)
        mine = current.get(recorded.name)
        same = mine is not None and mine.kind == recorded.kind and mine.model == recorded.model
        if same and mine is not None and mine.base_url and without_userinfo(mine.base_url) == recorded.base_url:
            recorded = recorded.model_copy(update={"base_url": mine.base_url})
        out.append(recorded)
    return out


def endpoint_records(scheduler: Scheduler) -> list[dict[str, Any]]:
    """The run's endpoints as recorded: names, kinds, quotas, key variable names (never keys); a local model file's
    path made absolute."""
    records = []
    for endpoint in scheduler.endpoints:
        record = endpoint.config.model_dump(mode="json")
        if record.get("model_path"):
            record["model_path"] = absolute(record["model_path"])
        records.append(record)
    return records


SPEC_VERSION = 2  # 1: the options as a free dict (llmcorr before the typed spec); 2: typed options per kind


class KindOptions(BaseModel):
    """The options every run kind records; each kind adds its own (kinds.py `RunKind.options_model`)."""

    model_config = ConfigDict(extra="forbid")

    endpoint_configs: list[dict[str, Any]] = Field(default_factory=list)  # names, kinds, quotas, key names (no key)
    config: str | None = None  # the llmcorr.toml the run was made with (absolute)
    executor: str | None = None  # "ray" when not run locally (`runs show` says so; a resume runs locally)
    allow_env: list[str] = Field(default_factory=list)  # variables a prompt file was let read: names only
    resumed_from: str | None = None  # the run whose finished rows this one reused (`--resume-from`)

    @classmethod
    def from_version_1(cls, options: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """A version-1 record's options in this model's terms: keys it does not know are dropped."""
        return {k: v for k, v in options.items() if k in cls.model_fields}


class OtherOptions(KindOptions):
    """The options of a run whose kind this installation does not know (a plugin's, say): kept as they are."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def from_version_1(cls, options: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        return options


class RunSpec(BaseModel):
    """What re-creates a run, as recorded (versioned: an older record is upgraded as it is read)."""

    model_config = ConfigDict(extra="forbid")

    version: int = SPEC_VERSION
    kind: str
    data: str  # absolute path, or "DataFrame"
    data_sha256: str
    template: str  # the prompt file, flow reference or prompt template
    template_sha256: str
    endpoints: list[dict[str, Any]]  # each endpoint as its provider describes itself
    params: dict[str, Any]  # the sampling parameters (GenParams.to_dict)
    options: SerializeAsAny[KindOptions] = Field(default_factory=KindOptions)  # the kind's own model
    llmcorr_version: str = __version__
    cache: bool = True  # answered from the response cache where it had the answer
    rerun_of: str | None = None  # the run this one made again

    @model_validator(mode="before")
    @classmethod
    def _typed(cls, data: Any) -> Any:
        """Options validated by the run kind's own model; a version-1 record upgraded on the way."""
        if not isinstance(data, dict) or isinstance(data.get("options"), KindOptions):
            return data
        model = _options_model(str(data.get("kind")))
        options = data.get("options") or {}
        if data.get("version", 1) < 2:
            data = {k: v for k, v in data.items() if k in cls.model_fields} | {"version": SPEC_VERSION}
            options = model.from_version_1(options, data)
        try:
            return data | {"options": model.model_validate(options)}
        except ValidationError as exc:
            raise ValueError(f"options.{first_error(exc)}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _options_model(kind: str) -> type[KindOptions]:
    from .kinds import known_kind  # the run kinds import this module

    found = known_kind(kind)
    return found.options_model if found is not None else OtherOptions


def spec_of(record: RunRecord) -> RunSpec:
    """A recorded run's spec, typed (one line if the record is not a spec this version can read)."""
    try:
        return RunSpec.model_validate(record.spec)
    except ValidationError as exc:
        raise UserError(f"run {record.label}: its recorded spec cannot be read ({first_error(exc)})") from None


def shown_spec(record: RunRecord) -> RunSpec | None:
    """A recorded run's spec for display: None where it is not one this version reads (a record made by other means
    than a run), which the CLI and the dashboard show as unknown rather than fail."""
    try:
        return spec_of(record)
    except UserError:
        return None


def first_error(exc: ValidationError) -> str:
    """`field.path: what is wrong` of a validation's first error."""
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
