"""OpenAI-compatible model servers on this machine: vLLM, Ollama and llama.cpp's llama-server.

Each is the openai provider with the server's usual localhost address (its kind's `default_base_url`, kinds.py) and
no key unless one is configured; its kind goes into the run record and the response cache's identity. They have no
RPM/TPM quota: the endpoint's `max_concurrency` is their throttle.
"""

from __future__ import annotations

from . import registry
from .openai import OpenAIProvider


class ModelServerProvider(OpenAIProvider):
    """An OpenAI-compatible server whose `kind` names its default `base_url`."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
    ) -> None:
        default = registry.get(self.kind).default_base_url or ""
        super().__init__(model, base_url or default, api_key_env, max_concurrency, timeout_s)


class VLLMProvider(ModelServerProvider):
    kind = "vllm"


class OllamaProvider(ModelServerProvider):
    kind = "ollama"


class LlamaCppServerProvider(ModelServerProvider):
    kind = "llamacpp"


SERVER_PROVIDERS: dict[str, type[OpenAIProvider]] = {
    p.kind: p for p in (VLLMProvider, OllamaProvider, LlamaCppServerProvider)
}
