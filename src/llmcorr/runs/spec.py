"""What re-creates a run: the data's hash, the prompt's hash, the endpoint, the parameters, the seed, the version.

Every file a run names (data, prompt file, flow source, template, config, output, a local model) is recorded as an
absolute path, so `runs resume` and `runs rerun` work from any directory; `recorded_file` finds one again, or says in
one line which file is gone, where it was expected and which option points at its new place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._version import __version__
from ..data import as_frame
from ..errors import DataError, UserError

if TYPE_CHECKING:
    from ..config import Config, EndpointConfig
    from ..scheduler import Scheduler
    from ..store import RunRecord
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
    spec = record.spec
    if given is None:
        if spec["data"] == "DataFrame":
            raise UserError(f"run {record.label} was made from a DataFrame: pass it again ({keyword}=df)")
        given = recorded_file(record.label, spec["data"], "data file", "--data NEWPLACE")
    elif isinstance(given, str | Path) and not Path(given).is_file():
        raise DataError(f"--data {given}: no such file")
    if data_sha256(Path(given) if isinstance(given, str | Path) else as_frame(given)[0]) != spec["data_sha256"]:
        raise UserError(f"run {record.label}: the data in {given} is not what the run was made from ({spec['data']})")
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


def recorded_endpoints(options: dict[str, Any], config: Config) -> list[EndpointConfig]:
    """The endpoints a recorded run used (its spec's `endpoint_configs`: names, kinds, URLs, quotas, key variable
    names), for a resume or rerun. A URL is recorded without its `user:password@`: where this llmcorr.toml has the same
    endpoint at that URL with its credentials, that one is used, so the resume authenticates as the run did."""
    from ..config import EndpointConfig, without_userinfo

    current = {e.name: e for e in config.endpoints}
    out = []
    for fields in options.get("endpoint_configs", []):
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


@dataclass(frozen=True)
class RunSpec:
    kind: str
    data: str
    data_sha256: str
    template: str
    template_sha256: str
    endpoints: list[dict[str, Any]]
    params: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    llmcorr_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
