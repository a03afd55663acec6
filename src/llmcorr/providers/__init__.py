"""LLM endpoints behind one interface. `make_provider` builds one from a `ProviderConfig`."""

from __future__ import annotations

from ..config import ProviderConfig
from .base import Completion, GenParams, Message, Provider
from .local import LocalProvider, embedded_model_path
from .openai import OpenAIProvider


def make_provider(config: ProviderConfig) -> Provider:
    """The provider a config names. Heavy work (loading a model, opening connections) happens on first use."""
    if config.kind == "local":
        return LocalProvider(model_path=config.model_path)
    return OpenAIProvider(
        model=config.model or "",
        base_url=config.base_url or "https://api.openai.com/v1",
        api_key_env=config.api_key_env,
        max_concurrency=config.max_concurrency or 8,
        timeout_s=config.timeout_s,
    )


__all__ = [
    "Completion",
    "GenParams",
    "LocalProvider",
    "Message",
    "OpenAIProvider",
    "Provider",
    "embedded_model_path",
    "make_provider",
]
