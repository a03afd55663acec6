"""Prompt flow connections as llmcorr endpoints: a node's `connection: NAME`, a model configuration's
`connection=NAME`, a tool argument typed as a connection: each is the llmcorr.toml endpoint of that name, or the one
`--connection NAME=ENDPOINT` maps it to.

    connections = Connections.of(config, {"azure_open_ai_connection": "gpt4o"})
    endpoint = connections.endpoint("azure_open_ai_connection", "flows/qa/flow.dag.yaml: node 'answer'")
    with connections.active():          # flow code loading and running: Prompty.load(model=...) resolves here
        ...

An unknown connection is a `UserError` naming where it was read and the endpoints there are: a flow's connections
are resolved when it loads, before any row runs. `Connections.loose()` (a run given a provider object, not
llmcorr.toml endpoints) resolves every connection to None: any of the run's endpoints answers.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..config import Config, EndpointConfig


@dataclass
class Connections:
    """How connection names become endpoint names for one run; `used` records what each resolved to."""

    mapping: dict[str, str] = field(default_factory=dict)  # --connection NAME=ENDPOINT
    configs: dict[str, EndpointConfig] = field(default_factory=dict)  # llmcorr.toml's endpoints by name
    strict: bool = True  # False: a run on a given provider, where every connection is that provider
    used: dict[str, str] = field(default_factory=dict)  # connection -> endpoint, in the order first resolved

    @classmethod
    def of(cls, config: Config, mapping: Mapping[str, str] | None = None) -> Connections:
        """The connections of a run on `config`'s endpoints; a `--connection` naming no endpoint fails here."""
        configs = {e.name: e for e in config.endpoints}
        for name, endpoint in (mapping or {}).items():
            if endpoint not in configs:
                there = _there(configs)
                raise UserError(f"--connection {name}={endpoint}: no endpoint {endpoint!r} in llmcorr.toml{there}")
        return cls(dict(mapping or {}), configs)

    @classmethod
    def loose(cls) -> Connections:
        return cls(strict=False)

    def endpoint(self, name: str, where: str) -> str | None:
        """The endpoint that serves connection `name` (None: any of the run's endpoints, for a loose run)."""
        if not self.strict:
            return None
        endpoint = self.mapping.get(name, name)
        if endpoint not in self.configs:
            raise UserError(
                f"{where}: connection {name!r} is not an endpoint in llmcorr.toml{_there(self.configs)};"
                f" name one with --connection {name}=ENDPOINT"
            )
        self.used.setdefault(name, endpoint)
        return endpoint

    def config(self, name: str, where: str) -> EndpointConfig | None:
        """The endpoint configuration of connection `name` (None for a loose run)."""
        endpoint = self.endpoint(name, where)
        return self.configs[endpoint] if endpoint is not None else None

    def endpoints(self) -> list[str]:
        """The endpoints the resolved connections use, each once, in the order first used."""
        return list(dict.fromkeys(self.used.values()))

    @contextmanager
    def active(self) -> Iterator[Connections]:
        """Within this block, `current()` is these connections (flow code resolving a model configuration)."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


_current: contextvars.ContextVar[Connections | None] = contextvars.ContextVar("llmcorr_connections", default=None)


def current() -> Connections | None:
    """The connections of the flow being loaded or run, if any."""
    return _current.get()


def as_connection(annotation: Any, value: Any, where: str) -> Any:
    """A tool argument as Prompt flow passes it: a connection's name, where the parameter is typed as a connection
    class (one with a `from_endpoint(name, config)` class method), becomes that connection built from its endpoint;
    anything else is passed as it is."""
    build = getattr(annotation, "from_endpoint", None) if inspect.isclass(annotation) else None
    if build is None or not isinstance(value, str):
        return value
    connections = current() or Connections.loose()
    return build(value, connections.config(value, where))


def _there(configs: Mapping[str, Any]) -> str:
    return f" (endpoints: {', '.join(configs)})" if configs else " (it has no endpoints)"
