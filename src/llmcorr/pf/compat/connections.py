"""`promptflow.connections` as llmcorr supplies it: Azure OpenAI, OpenAI, serverless and custom connections, with
Prompt flow's constructor fields, built from an llmcorr.toml endpoint by `from_endpoint(name, config)`.

A tool argument or a flow's init argument typed as one of these gets the connection of that name (pf/connections.py
`as_connection`): the endpoint's `base_url` as its base, its key read from `api_key_env` (environment or secrets
file) when it has one. A connection's repr and str never show a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ...keys import key_value

if TYPE_CHECKING:
    from ...config import EndpointConfig

HIDDEN = "******"


def _key(config: EndpointConfig | None) -> str | None:
    return key_value(config.api_key_env) if config is not None and config.api_key_env else None


class _Connection:
    """Configs (shown) and secrets (never shown), as Prompt flow keeps them."""

    TYPE: ClassVar[str] = ""

    def __init__(
        self, configs: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None, name: str | None = None
    ) -> None:
        self.name = name
        self.type = self.TYPE
        self.class_name = f"{self.TYPE}Connection"
        self.configs: dict[str, Any] = dict(configs or {})
        self.secrets: dict[str, Any] = dict(secrets or {})

    def keys(self) -> list[str]:
        return [*self.configs, *self.secrets]

    def __getitem__(self, item: str) -> Any:
        if item in self.secrets:
            return self.secrets[item]
        return self.configs[item]

    def __repr__(self) -> str:
        shown = {**self.configs, **dict.fromkeys(self.secrets, HIDDEN)}
        fields = ", ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None)
        return f"{type(self).__name__}(name={self.name!r}{', ' if fields else ''}{fields})"

    __str__ = __repr__


class _KeyedConnection(_Connection):
    @property
    def api_key(self) -> str | None:
        key = self.secrets.get("api_key")
        return str(key) if key is not None else None

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self.secrets["api_key"] = value


class AzureOpenAIConnection(_KeyedConnection):
    TYPE = "AzureOpenAI"

    def __init__(
        self,
        api_base: str | None,
        api_key: str | None = None,
        api_type: str = "azure",
        api_version: str = "2024-02-01",  # Prompt flow's default
        auth_mode: str = "key",
        resource_id: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        configs = {
            "api_base": api_base,
            "api_type": api_type,
            "api_version": api_version,
            "auth_mode": auth_mode,
            "resource_id": resource_id,
        }
        super().__init__(configs, {"api_key": api_key} if auth_mode == "key" else {}, name)

    api_base = property(lambda self: self.configs.get("api_base"))
    api_type = property(lambda self: self.configs.get("api_type"))
    api_version = property(lambda self: self.configs.get("api_version"))
    auth_mode = property(lambda self: self.configs.get("auth_mode"))
    resource_id = property(lambda self: self.configs.get("resource_id"))

    @classmethod
    def from_endpoint(cls, name: str, config: EndpointConfig | None) -> AzureOpenAIConnection:
        if config is None:
            return cls(api_base=None, name=name)
        return cls(api_base=config.base_url, api_key=_key(config), api_version=config.api_version, name=name)


class OpenAIConnection(_KeyedConnection):
    TYPE = "OpenAI"

    def __init__(
        self,
        api_key: str | None = None,
        organization: str | None = None,
        base_url: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        base_url = None if base_url in ("", "_") else base_url
        super().__init__({"organization": organization, "base_url": base_url}, {"api_key": api_key}, name)

    organization = property(lambda self: self.configs.get("organization"))
    base_url = property(lambda self: self.configs.get("base_url"))

    @classmethod
    def from_endpoint(cls, name: str, config: EndpointConfig | None) -> OpenAIConnection:
        if config is None:
            return cls(name=name)
        return cls(api_key=_key(config), base_url=config.base_url, name=name)


class ServerlessConnection(_KeyedConnection):
    TYPE = "Serverless"

    def __init__(self, api_key: str | None, api_base: str | None, name: str | None = None, **kwargs: Any) -> None:
        super().__init__({"api_base": api_base}, {"api_key": api_key}, name)

    api_base = property(lambda self: self.configs.get("api_base"))

    @classmethod
    def from_endpoint(cls, name: str, config: EndpointConfig | None) -> ServerlessConnection:
        if config is None:
            return cls(api_key=None, api_base=None, name=name)
        return cls(api_key=_key(config), api_base=config.base_url, name=name)


class CustomConnection(_Connection):
    """Any configs and secrets; from an endpoint: configs `base_url` and `model`, secret `api_key` (those it has)."""

    TYPE = "Custom"

    def __init__(
        self, secrets: dict[str, Any], configs: dict[str, Any] | None = None, name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(configs, secrets, name)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__") or item in ("configs", "secrets"):
            raise AttributeError(item)
        for values in (self.secrets, self.configs):
            if item in values:
                return values[item]
        raise AttributeError(f"{type(self).__name__} {self.name!r} has no {item!r}")

    def is_secret(self, item: str) -> bool:
        return item in self.secrets

    @classmethod
    def from_endpoint(cls, name: str, config: EndpointConfig | None) -> CustomConnection:
        if config is None:
            return cls(secrets={}, name=name)
        key = _key(config)
        configs = {k: v for k, v in (("base_url", config.base_url), ("model", config.model)) if v is not None}
        return cls(secrets={"api_key": key} if key is not None else {}, configs=configs, name=name)


CONNECTIONS: dict[str, type[_Connection]] = {
    c.__name__: c for c in (AzureOpenAIConnection, OpenAIConnection, ServerlessConnection, CustomConnection)
}

__all__ = ["AzureOpenAIConnection", "CustomConnection", "OpenAIConnection", "ServerlessConnection"]
