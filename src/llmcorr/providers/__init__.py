"""LLM endpoints behind one interface. `make_provider` builds one from a `ProviderConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import OPENAI_URL, EndpointConfig
from .base import Completion, GenParams, Message, Provider, RateLimitInfo
from .local import EMBEDDED_FILE, LocalProvider, embedded_model_path
from .openai import AzureOpenAIProvider, OpenAIProvider
from .servers import SERVER_PROVIDERS

DEFAULT_HTTP_CONCURRENCY = 8


def make_provider(config: EndpointConfig) -> Provider:
    """The provider a config names. Heavy work (loading a model, opening connections) happens on first use."""
    if config.kind == "local":
        return LocalProvider(model_path=config.model_path)
    base_url = config.base_url or OPENAI_URL
    concurrency = config.max_concurrency or DEFAULT_HTTP_CONCURRENCY
    if config.kind == "azure":
        return AzureOpenAIProvider(
            model=config.model or "",
            base_url=base_url,
            api_key_env=config.key_env,
            max_concurrency=concurrency,
            timeout_s=config.timeout_s,
            api_version=config.api_version,
        )
    return SERVER_PROVIDERS.get(config.kind, OpenAIProvider)(  # vllm, ollama, llamacpp: localhost defaults
        model=config.model or "",
        base_url=base_url,
        api_key_env=config.key_env,
        max_concurrency=concurrency,
        timeout_s=config.timeout_s,
    )


def printable_url(url: str) -> str:
    """A URL as it may be shown: no user:password@ and no query (either can hold a credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "(an unreadable URL)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe_endpoint(info: Mapping[str, Any], *extras: str) -> str:
    """One endpoint as the start-of-run line, `runs show` and the dashboard name it, from what `Provider.describe()`
    recorded plus its name: "east (openai http://127.0.0.1:8101/v1, model gpt-4o-mini, concurrency 8)", "local (local
    embedded model SmolLM2-135M-Instruct.Q4_1, concurrency 1)". Never a key; a URL without its credentials."""
    kind, model = info.get("kind") or "?", info.get("model") or "?"
    if kind == "local":
        path = info.get("model_path")
        where = "local embedded model " + (model if not path or PurePath(path).name == EMBEDDED_FILE else str(path))
    else:
        url = info.get("base_url")
        where = f"{kind} {printable_url(url) if url else '(no URL recorded)'}, model {model}"
    return f"{info.get('name') or '?'} ({', '.join([where, *extras])})"


__all__ = [
    "AzureOpenAIProvider",
    "Completion",
    "GenParams",
    "LocalProvider",
    "Message",
    "OpenAIProvider",
    "Provider",
    "RateLimitInfo",
    "describe_endpoint",
    "embedded_model_path",
    "make_provider",
    "printable_url",
]
