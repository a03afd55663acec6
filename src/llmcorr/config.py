"""One typed config object, validated once: environment + CLI flags (llmcorr.toml joins with the scheduler).

`Config.load(**overrides)` is the single entry point; the CLI and the Python API both go through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

HOME_ENV = "LLMCORR_HOME"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".llmcorr").expanduser()


class ProviderConfig(BaseModel):
    """Which LLM endpoint to call. Holds the *name* of the key's environment variable, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "openai"] = "local"
    model: str | None = None
    model_path: Path | None = None
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    max_concurrency: int | None = Field(default=None, ge=1, le=1024)
    timeout_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ProviderConfig:
        if self.kind == "openai" and not self.model:
            raise ValueError("the openai provider needs a model name (--model)")
        return self


class Config(BaseModel):
    """Everything a command needs to know about where things live and which endpoint to call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default_factory=default_home)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)

    @property
    def store_path(self) -> Path:
        return self.home / "llmcorr.db"

    @classmethod
    def load(cls, **overrides: Any) -> Config:
        """Build and validate the config; a bad value becomes one `ConfigError` line."""
        values = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    return f"bad config: {where}: {msg}"
