"""One typed config object, validated once: `llmcorr.toml` + environment + CLI flags.

`Config.load(path=None, **overrides)` is the single entry point; the CLI and the Python API both go through it.
`llmcorr.toml` is looked up in the working directory (or given with `--config PATH`):

```toml
default = ["east"]                   # optional, before any [[endpoints]]: what a run uses when --endpoint names none
store_url = "postgresql://me@db.example:5432/llmcorr"  # optional: a team's shared store (or LLMCORR_STORE)

[[endpoints]]
name = "east"                        # referred to by --endpoint east
kind = "openai"                      # openai (any OpenAI-compatible server; the default with a base_url) | azure |
                                     # local (the embedded model; no base_url) | vllm | ollama | llamacpp | a plugin's
base_url = "http://127.0.0.1:8101/v1"
model = "gpt-4o-mini"
api_key = "${env:EAST_KEY}"          # the environment's EAST_KEY, else secrets.env's (llmcorr.keys); never stored
rpm = 600                            # requests per minute (optional)
tpm = 60000                          # tokens per minute (optional)
# optional: max_concurrency, quota_group, price_in / price_out (per 1M tokens), timeout_s, window_s, api_version
```

(With no `default`, a run uses the embedded local model, or the endpoint the `--provider`/`--model`… flags describe.)
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .keys import check_key_text, key_value, secrets_path
from .locations import POSTGRES_SCHEMES, STORE_ENV, StoreURL, default_home

if TYPE_CHECKING:
    from .providers.registry import ProviderKind

CONFIG_FILE = "llmcorr.toml"
OPENAI_URL = "https://api.openai.com/v1"
_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


def http_url(value: str | None, hint: str = "") -> str | None:
    """A URL a request can go to, checked when the config loads rather than when the first request fails."""
    if value is None:
        return value
    bad = f"expected an http:// or https:// URL with a host{hint}, got {value[:80]!r}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise ValueError(bad) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not value.isprintable() or " " in value:
        raise ValueError(bad)
    return value


def without_userinfo(url: str) -> str:
    """`url` without `user:password@`: how a URL is recorded (run spec, endpoint records) and named in errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _provider_kind(name: str) -> ProviderKind:
    """The registry's kind `name`, or a ValueError naming the kinds there are (the config adds file and field)."""
    from .providers import registry  # here: the providers package imports this module

    try:
        return registry.get(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class EndpointConfig(BaseModel):
    """One LLM endpoint and its quota. Holds the *name* of the key's environment variable, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    kind: str = "local"  # a provider kind (providers/registry.py): built in, or a plugin's
    model: str | None = None
    model_path: Path | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    api_version: str = "2024-10-21"
    # allow_inf_nan=False: `rpm = inf` in TOML is a typo'd quota, not "unlimited" (leave the key out for that)
    rpm: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="requests per minute")
    tpm: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="tokens per minute")
    max_concurrency: int | None = Field(default=None, ge=1, le=4096)
    quota_group: str | None = None
    price_in: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="price per 1M prompt tokens")
    price_out: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="price per 1M completion tokens"
    )
    timeout_s: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    window_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="the server's enforcement window (Azure: 10 s)"
    )
    options: SerializeAsAny[BaseModel] | None = Field(
        default=None, description="the options of the endpoint's kind alone: an instance of its ProviderKind.options"
    )

    @model_validator(mode="before")
    @classmethod
    def _key_reference(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            data = dict(data)
            ref = _ENV_REF.match(str(data.pop("api_key")))
            if not ref:
                raise ValueError(
                    'api_key must be "${env:VAR}": keys are read from the environment or the secrets file, '
                    "never from llmcorr.toml"
                )
            data["api_key_env"] = ref.group(1)
        return data

    @model_validator(mode="before")
    @classmethod
    def _kind_and_url(cls, data: Any) -> Any:
        """A `base_url` without a `kind` is an OpenAI-compatible server (never the embedded model); a model server's
        kind implies where it listens, so the run record holds the URL that was used."""
        if not isinstance(data, dict):
            return data
        if data.get("kind") is None:
            if data.get("base_url"):
                data = {**data, "kind": "openai"}
            elif data.get("model") and not data.get("model_path"):
                raise ValueError(
                    'a model without kind or base_url: set base_url (an OpenAI-compatible server), or kind = "openai" '
                    '(api.openai.com) or "azure"; the embedded model takes model_path'
                )
        kind = _provider_kind(data.get("kind") or "local")
        if kind.default_base_url and not data.get("base_url"):
            data = {**data, "base_url": kind.default_base_url}
        extra = {k: v for k, v in data.items() if k not in cls.model_fields and k != "api_key"}
        given = data.get("options")
        if extra or isinstance(given, dict):  # the options of this kind alone, checked by its own model
            common = {k: v for k, v in data.items() if k not in extra}
            data = {**common, "options": kind.parse_options({**(given or {}), **extra})}
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_serializer("base_url")
    def _recorded_url(self, value: str | None) -> str | None:
        """A recorded endpoint (a run's spec, its endpoint records) never holds the URL's `user:password@`."""
        return without_userinfo(value) if value else value

    @model_validator(mode="after")
    def _check(self) -> EndpointConfig:
        if self.base_url and without_userinfo(self.base_url) != self.base_url and self.key_env:
            raise ValueError(
                f"base_url holds user:password@ and an API key is set ({self.key_env}): one credential per endpoint. "
                "The URL's user and password are sent as HTTP Basic auth, the key as a bearer token; keep one"
            )
        kind = self.provider_kind
        if not kind.takes_base_url and self.base_url:
            raise ValueError(
                f'kind = "{self.kind}" runs {kind.about or "in this process"} and takes no base_url: for a server at '
                'that URL set kind = "openai" (or leave kind out)'
            )
        if kind.needs_model and not self.model:
            raise ValueError(f"the {self.kind} endpoint needs a model name (model = …, or --model)")
        if kind.needs_base_url and not self.base_url:
            raise ValueError(f"the {self.kind} endpoint needs base_url ({kind.about or 'its URL'})")
        return self

    @property
    def provider_kind(self) -> ProviderKind:
        """What this endpoint's kind is and does (providers/registry.py)."""
        return _provider_kind(self.kind)

    @property
    def group(self) -> str:
        """Endpoints in one quota group share buckets."""
        return self.quota_group or self.name

    @property
    def enforcement_window_s(self) -> float | None:
        """The server's fixed enforcement window: as configured, else its kind's (Azure: 10 s), else none
        (continuous)."""
        return self.window_s or self.provider_kind.enforcement_window_s

    @property
    def key_env(self) -> str | None:
        """The environment variable holding the key: as configured, or OPENAI_API_KEY for api.openai.com."""
        if self.api_key_env:
            return self.api_key_env
        if self.kind == "openai" and (self.base_url or OPENAI_URL).rstrip("/") == OPENAI_URL:
            return "OPENAI_API_KEY"
        return None

    def check_key(self) -> None:
        """A configured key variable must be set, to a key a header can carry, before any work starts."""
        if not self.key_env:
            return
        key = key_value(self.key_env)
        if not key:
            raise ConfigError(
                f"endpoint {self.name}: environment variable {self.key_env} is not set (the API key); set it, or add "
                f"{self.key_env}=… to {secrets_path()} (chmod 600)"
            )
        try:
            check_key_text(self.key_env, key)
        except ConfigError as exc:
            raise ConfigError(f"endpoint {self.name}: {exc}") from None

    def cost(self, input_tokens: float, output_tokens: float) -> float | None:
        if self.price_in is None and self.price_out is None:
            return None
        return (input_tokens * (self.price_in or 0) + output_tokens * (self.price_out or 0)) / 1e6


# The skeleton's name for it; kept for the public API.
ProviderConfig = EndpointConfig


class Config(BaseModel):
    """Everything a command needs: where things live, which endpoints exist, which one is the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default_factory=default_home)
    provider: EndpointConfig = Field(default_factory=EndpointConfig)
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    default: list[str] = Field(default_factory=list, description="endpoints a run uses when none is named")
    tracing: bool = Field(default=True, description="record every run, row, step and LLM call as spans")
    otlp: str | None = Field(
        default_factory=lambda: os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        description="also export spans over OTLP/HTTP to this collector URL",
    )
    source: str | None = Field(default=None, description="the llmcorr.toml it came from")
    store_url: str | None = Field(
        default_factory=lambda: os.environ.get(STORE_ENV) or None,
        validate_default=True,
        repr=False,  # it may hold a password: shown only as Config.store_path, which leaves it out
        description="a shared PostgreSQL store (postgresql://user@host:port/db) instead of home/llmcorr.db",
    )

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, endpoints: list[EndpointConfig]) -> list[EndpointConfig]:
        names = [e.name for e in endpoints]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ValueError(f"two endpoints are named {dup!r}")
        return endpoints

    @field_validator("store_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(POSTGRES_SCHEMES):  # never echoed: it may hold a password
            raise ValueError("expected a PostgreSQL URL, postgresql://user@host:port/db (store_url or LLMCORR_STORE)")
        return value

    @field_validator("otlp")
    @classmethod
    def _otlp_url(cls, value: str | None) -> str | None:
        return http_url(value, " (otlp, --otlp or OTEL_EXPORTER_OTLP_ENDPOINT)")

    @field_validator("default", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _defaults_exist(self) -> Config:
        known = {e.name for e in self.endpoints}
        missing = next((n for n in self.default if n not in known), None)
        if missing is not None:
            raise ValueError(f"default: no endpoint is named {missing!r} (endpoints: {', '.join(known) or 'none'})")
        return self

    @property
    def store_path(self) -> Path | StoreURL:
        """Where the run store lives: the PostgreSQL database of `store_url` (or LLMCORR_STORE), else
        home/llmcorr.db. `Store(config.store_path)` opens either; printed, a URL leaves out its password."""
        return StoreURL(self.store_url) if self.store_url else self.home / "llmcorr.db"

    def endpoint(self, name: str) -> EndpointConfig:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        known = ", ".join(e.name for e in self.endpoints) or f"none (no {CONFIG_FILE} found)"
        raise ConfigError(f"--endpoint {name}: no such endpoint; configured: {known}")

    def select(self, names: list[str] | None) -> list[EndpointConfig]:
        """The endpoints a run uses: those named, else `default` from llmcorr.toml, else the provider flags' (the
        embedded model when none is given); their keys must be set."""
        names = names or self.default
        chosen = [self.endpoint(n) for n in names] if names else [self.provider]
        for endpoint in chosen:
            endpoint.check_key()
        return chosen

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Config:
        """Read `llmcorr.toml` (given, or in the working directory), apply overrides, validate once."""
        values: dict[str, Any] = {}
        source = Path(path) if path else Path(CONFIG_FILE)
        if path or source.is_file():
            values = _read_toml(source)
            values["source"] = str(source)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, values.get("source"), values)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except (ValueError, RecursionError) as exc:  # an integer of more digits than Python converts, nesting too deep
        raise ConfigError(f"{path}: not valid TOML: {type(exc).__name__}: {str(exc)[:120]}") from None


def _one_line(exc: ValidationError, source: str | None, values: dict[str, Any]) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            where += f"[{part}]"
            if loc[i - 1] == "endpoints" and i == 1:
                with contextlib.suppress(KeyError, IndexError, TypeError):
                    where += f" ({values['endpoints'][part]['name']})"
        else:
            where += ("." if where else "") + str(part)
    msg = err["msg"].removeprefix("Value error, ")
    prefix = f"bad config: {source}: " if source else "bad config: "
    return f"{prefix}{where or 'config'}: {msg}"
