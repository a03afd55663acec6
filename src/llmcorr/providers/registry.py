"""Provider kinds by name: the `kind` of an endpoint in llmcorr.toml. The built-in kinds and plugins register the same
way, through the entry-point group `llmcorr.providers` (name = the kind; value = a `ProviderKind`):

```toml
# a plugin's pyproject.toml
[project.entry-points."llmcorr.providers"]
echo = "llmcorr_echo:KIND"
```

A `ProviderKind` says what the rest of llmcorr asks of a kind instead of comparing strings: how to build its provider
from an endpoint's config, its default `base_url`, whether it takes a URL or a model name at all, the server's
enforcement window, the OpenTelemetry `gen_ai.provider.name`, whether its requests leave this machine (`remote`: a run
asks before spending on it) and whether its answers come from one in-process model whose KV cache a run can share
(`shares_kv_cache`). Options that only one kind takes are its `options` model's (pydantic, unknown keys refused): an
endpoint's keys that are not common to every kind are validated against it, and reach the provider as
`config.options`, an instance of it (frozen, like the config).

The built-in kinds are registered here too, so a source checkout without installed metadata still has them; a
plugin that fails to load is one line when an endpoint names its kind, never when another kind is used.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import EndpointConfig
    from .base import Provider

GROUP = "llmcorr.providers"
# the built-in kinds: where each one's ProviderKind lives (what pyproject.toml's entry points name too)
BUILTIN = {
    "local": "llmcorr.providers.kinds:LOCAL",
    "openai": "llmcorr.providers.kinds:OPENAI",
    "azure": "llmcorr.providers.kinds:AZURE",
    "vllm": "llmcorr.providers.kinds:VLLM",
    "ollama": "llmcorr.providers.kinds:OLLAMA",
    "llamacpp": "llmcorr.providers.kinds:LLAMACPP",
}


class NoOptions(BaseModel):
    """A kind that takes no options of its own. A kind's options model is frozen and forbids unknown keys, like
    this one."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ProviderKind:
    """One kind of endpoint (module docstring)."""

    name: str
    build: Callable[[EndpointConfig], Provider]
    default_base_url: str | None = None
    takes_base_url: bool = True
    needs_base_url: bool = False  # no default URL will do (an Azure deployment's)
    needs_model: bool = True
    enforcement_window_s: float | None = None  # a fixed window the server counts its quota in (Azure: 10 s)
    otel_name: str | None = None  # gen_ai.provider.name (default: the kind's name)
    remote: bool = True
    shares_kv_cache: bool = False
    options: type[BaseModel] = NoOptions
    about: str = ""  # one line for `llmcorr.toml` errors and docs

    @property
    def provider_name(self) -> str:
        return self.otel_name or self.name

    def parse_options(self, options: dict[str, Any]) -> BaseModel:
        """`options` as the kind's options model, or a ValueError saying which option is wrong (the config names the
        file and endpoint)."""
        try:
            return self.options(**options)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                takes = (
                    f"its options: {', '.join(self.options.model_fields)}"
                    if self.options.model_fields
                    else "it has none"
                )
                raise ValueError(
                    f"{field} is not an endpoint setting, nor an option of kind {self.name} ({takes})"
                ) from None
            raise ValueError(f"{field}: {err['msg']}") from None


_kinds: dict[str, ProviderKind] = {}  # resolved kinds
_sources: dict[str, str] = {}  # "module:attribute" of each kind not resolved yet
_broken: dict[str, str] = {}  # why a kind's plugin did not load
_lock = threading.RLock()
_loaded = False


def register(kind: ProviderKind) -> ProviderKind:
    """Add a kind in this process (tests, notebooks); installed plugins use the entry-point group instead."""
    with _lock:
        _kinds[kind.name] = kind
        _broken.pop(kind.name, None)
    return kind


def _load_all() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        found = dict(BUILTIN)
        for ep in importlib.metadata.entry_points(group=GROUP):
            found.setdefault(ep.name, ep.value)
        for name, value in found.items():
            if name not in _kinds:
                _sources[name] = value  # resolved on first use: a broken plugin costs only its own kind
        _loaded = True


def _resolve(name: str, value: str) -> None:
    module, _, attr = value.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:  # a plugin's own import error, whatever it is
        _broken[name] = f"its plugin ({value}) does not load: {type(exc).__name__}: {exc}"
        return
    if isinstance(obj, ProviderKind) and obj.name == name:
        _kinds[name] = obj
    else:
        _broken[name] = f"its plugin ({value}) is not a ProviderKind named {name!r}"


def names() -> list[str]:
    """Every kind there is: the built-in ones first, then plugins, alphabetically."""
    _load_all()
    with _lock:
        every = {*_kinds, *_sources, *_broken}
    order = list(BUILTIN)
    return sorted(every, key=lambda n: (order.index(n), "") if n in BUILTIN else (len(order), n))


def get(name: str) -> ProviderKind:
    """The kind `name`, or one ConfigError line naming the kinds there are."""
    _load_all()
    with _lock:
        if name in _sources:
            _resolve(name, _sources.pop(name))
        if name in _kinds:
            return _kinds[name]
        if name in _broken:
            raise ConfigError(f"kind {name!r}: {_broken[name]}")
    raise ConfigError(
        f"kind {name!r}: no such provider; kinds: {', '.join(names())} "
        f"(a plugin adds one through the {GROUP!r} entry-point group)"
    )


def make_provider(config: EndpointConfig) -> Provider:
    """The provider an endpoint's config names. Heavy work (loading a model, opening connections) happens on first
    use."""
    return get(config.kind).build(config)
