"""The built-in provider kinds, registered by name like any plugin's (providers/registry.py): the embedded model,
OpenAI and every OpenAI-compatible server, Azure OpenAI, and the model servers that usually run on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import OPENAI_URL
from .base import Provider
from .registry import ProviderKind

if TYPE_CHECKING:
    from ..config import EndpointConfig

AZURE_WINDOW_S = 10.0  # Azure OpenAI counts its quota in fixed 10-second windows
DEFAULT_HTTP_CONCURRENCY = 8  # an HTTP endpoint's requests in flight when its config sets no max_concurrency


def _local(config: EndpointConfig) -> Provider:
    from .local import LocalProvider

    return LocalProvider(model_path=config.model_path)


def _http(config: EndpointConfig) -> Provider:
    from .openai import AzureOpenAIProvider, OpenAIProvider
    from .servers import SERVER_PROVIDERS

    common = {
        "model": config.model or "",
        "base_url": config.base_url or OPENAI_URL,
        "api_key_env": config.key_env,
        "max_concurrency": config.max_concurrency or DEFAULT_HTTP_CONCURRENCY,
        "timeout_s": config.timeout_s,
    }
    if config.kind == "azure":
        return AzureOpenAIProvider(**common, api_version=config.api_version)  # type: ignore[arg-type]
    return SERVER_PROVIDERS.get(config.kind, OpenAIProvider)(**common)  # type: ignore[arg-type]


LOCAL = ProviderKind(
    "local",
    _local,
    takes_base_url=False,
    needs_model=False,
    otel_name="llama_cpp",
    remote=False,
    shares_kv_cache=True,
    about="the embedded llama.cpp model",
)
OPENAI = ProviderKind("openai", _http, about="OpenAI (api.openai.com) or any OpenAI-compatible server at base_url")
AZURE = ProviderKind(
    "azure",
    _http,
    enforcement_window_s=AZURE_WINDOW_S,
    needs_base_url=True,
    otel_name="azure.ai.openai",
    about="…/openai/deployments/NAME",
)
# Model servers on this machine: OpenAI-compatible, no key unless configured, no quota (max_concurrency is their
# throttle); each kind names the address the server listens on by default
VLLM = ProviderKind("vllm", _http, default_base_url="http://127.0.0.1:8000/v1", about="vllm serve MODEL")
OLLAMA = ProviderKind("ollama", _http, default_base_url="http://127.0.0.1:11434/v1", about="ollama serve")
LLAMACPP = ProviderKind(
    "llamacpp", _http, default_base_url="http://127.0.0.1:8080/v1", about="llama-server -m MODEL.gguf --port 8080"
)
