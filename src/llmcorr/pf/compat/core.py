"""`promptflow.core` as llmcorr supplies it: `tool`, `ToolProvider`, `log_metric` and the model configurations
(`Prompty`/`AsyncPrompty` are in prompty.py).

Model configurations keep Prompt flow's fields and rules (a `connection` excludes an inline endpoint or key); their
repr never shows `api_key`. llmcorr reads a configuration only for its `connection`: that names the llmcorr.toml
endpoint a Prompty asks (pf/connections.py); without one, any of the run's endpoints answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from ...errors import UserError
from ..metrics import log_metric

F = TypeVar("F", bound=Callable[..., Any])

TOOL_TYPES = ("llm", "python", "csharp", "prompt", "action", "custom_llm")


@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    func: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    type: str | None = None,
    input_settings: Any = None,
    streaming_option_parameter: str | None = None,
    **kwargs: Any,
) -> Callable[[F], F]: ...


def tool(
    func: F | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    type: str | None = None,  # Prompt flow's name
    input_settings: Any = None,
    streaming_option_parameter: str | None = None,
    **kwargs: Any,
) -> F | Callable[[F], F]:
    """Prompt flow's `@tool` / `@tool(name=..., ...)`: the same function, marked `__llmcorr_tool__` (not wrapped:
    the DAG runner makes each node a traced step)."""
    if type is not None and type not in TOOL_TYPES:
        raise UserError(f"@tool(type={type!r}): Prompt flow has no such tool type ({', '.join(TOOL_TYPES)})")

    def mark(fn: F) -> F:
        fn.__llmcorr_tool__ = True  # type: ignore[attr-defined]
        fn.__llmcorr_tool_info__ = {"name": name, "description": description, "type": type}  # type: ignore[attr-defined]
        return fn

    return mark(func) if func is not None else mark


class ToolProvider:
    """Prompt flow's base of a class of tools: its `__init__` arguments are every tool's inputs."""

    _instance_init_params: dict[str, Any] | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        names = list(cls.get_initialize_inputs())
        cls._instance_init_params = {**dict(zip(names, args, strict=False)), **kwargs}
        return super().__new__(cls)

    def __init__(self) -> None:
        self._init_params = self._instance_init_params

    @classmethod
    def get_initialize_inputs(cls) -> dict[str, inspect.Parameter]:
        params = inspect.signature(cls.__init__).parameters
        return {k: v for k, v in params.items() if k != "self"}

    @classmethod
    def get_required_initialize_inputs(cls) -> dict[str, inspect.Parameter]:
        return {k: v for k, v in cls.get_initialize_inputs().items() if v.default is inspect.Parameter.empty}


class ModelConfiguration:
    """Base of the model configurations (Prompt flow's `ModelConfiguration`)."""

    connection: str | None


def _exclusive(kind: str, connection: str | None, inline: dict[str, Any]) -> None:
    given = [k for k, v in inline.items() if v]
    if connection and given:
        raise UserError(
            f"{kind}(connection={connection!r}): a connection and {', '.join(given)} cannot both be given"
            " (Prompt flow's rule: the connection is the endpoint)"
        )


@dataclass
class AzureOpenAIModelConfiguration(ModelConfiguration):
    azure_deployment: str
    azure_endpoint: str | None = None
    api_version: str | None = None
    api_key: str | None = field(default=None, repr=False)
    connection: str | None = None  # excludes azure_endpoint, api_version and api_key

    def __post_init__(self) -> None:
        inline = {"azure_endpoint": self.azure_endpoint, "api_key": self.api_key, "api_version": self.api_version}
        _exclusive(type(self).__name__, self.connection, inline)

    @classmethod
    def from_connection(cls, connection: Any, azure_deployment: str) -> AzureOpenAIModelConfiguration:
        """From an Azure OpenAI connection's endpoint, version and key."""
        return cls(
            azure_deployment=azure_deployment,
            azure_endpoint=connection.api_base,
            api_version=connection.api_version,
            api_key=connection.api_key,
        )


@dataclass
class OpenAIModelConfiguration(ModelConfiguration):
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    connection: str | None = None  # excludes base_url, api_key and organization

    def __post_init__(self) -> None:
        inline = {"base_url": self.base_url, "api_key": self.api_key, "organization": self.organization}
        _exclusive(type(self).__name__, self.connection, inline)

    @classmethod
    def from_connection(cls, connection: Any, model: str) -> OpenAIModelConfiguration:
        """From an OpenAI connection's base URL, key and organization."""
        return cls(
            model=model, base_url=connection.base_url, api_key=connection.api_key, organization=connection.organization
        )


MODEL_CONFIGURATIONS: dict[str, type[Any]] = {
    c.__name__: c for c in (AzureOpenAIModelConfiguration, OpenAIModelConfiguration)
}

__all__ = [
    "AzureOpenAIModelConfiguration",
    "ModelConfiguration",
    "OpenAIModelConfiguration",
    "ToolProvider",
    "log_metric",
    "tool",
]
