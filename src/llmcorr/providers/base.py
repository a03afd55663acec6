"""The one interface every LLM endpoint implements: chat messages in, text + token usage + latency out."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters sent with a request."""

    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass(frozen=True)
class RateLimitInfo:
    """What a server said about its quota in `x-ratelimit-*` headers (None where it said nothing)."""

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in vars(self).values())


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    model: str
    finish_reason: str | None = None
    ratelimit: RateLimitInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Provider(abc.ABC):
    """An LLM endpoint. Subclasses translate their own failures into `llmcorr.errors.ProviderError`s."""

    #: registry name, e.g. "local" or "openai"
    kind: str = ""
    #: how many requests the endpoint serves at once before queueing helps nobody
    max_concurrency: int = 8

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """The model's name as reported in runs and traces."""

    @abc.abstractmethod
    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        """Send one chat request and return its completion."""

    def count_tokens(self, text: str) -> int | None:
        """Tokens of `text` under this endpoint's tokenizer, or None when it has no tokenizer of its own."""
        return None

    def describe(self) -> dict[str, Any]:
        """What re-creates this endpoint in a run record. Never includes secrets."""
        return {"kind": self.kind, "model": self.model}

    def cache_identity(self) -> dict[str, Any]:
        """What distinguishes this endpoint's answers in the response cache (a server's model, not its key)."""
        return {k: v for k, v in self.describe().items() if k != "api_key_env"}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""
