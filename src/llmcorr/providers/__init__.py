"""LLM endpoints behind one interface, by kind (registry.py: built-in kinds and plugins alike). `make_provider`
builds one from an endpoint's config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .base import Completion, GenParams, Message, Provider, RateLimitInfo
from .local import EMBEDDED_FILE, LocalProvider, embedded_model_path
from .openai import AzureOpenAIProvider, OpenAIProvider
from .registry import ProviderKind, make_provider


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
    if kind == "local":  # the embedded model is named by its file, not a URL
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
    "ProviderKind",
    "RateLimitInfo",
    "describe_endpoint",
    "embedded_model_path",
    "make_provider",
    "printable_url",
]
