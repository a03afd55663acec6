"""LLM endpoints behind one interface. `make_provider` builds one from a `ProviderConfig`."""

from __future__ import annotations

from ..config import OPENAI_URL, EndpointConfig
from .base import Completion, GenParams, Message, Provider, RateLimitInfo
from .local import LocalProvider, embedded_model_path
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


__all__ = [
    "AzureOpenAIProvider",
    "Completion",
    "GenParams",
    "LocalProvider",
    "Message",
    "OpenAIProvider",
    "Provider",
    "RateLimitInfo",
    "embedded_model_path",
    "make_provider",
]
