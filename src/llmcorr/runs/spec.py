"""What re-creates a run: the data's hash, the prompt's hash, the endpoint, the parameters, the seed, the version."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._version import __version__


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
