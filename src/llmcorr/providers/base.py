"""The one interface every LLM endpoint implements: chat messages in, text + token usage + latency out."""

from __future__ import annotations

import abc
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


#: the most tokens an answer may be allowed: above any model's context today, so more is a typo, not a budget (an
#: astronomic max_tokens would make an astronomic estimate, and a token bucket no request ever fits)
MAX_TOKENS_LIMIT = 1_000_000
#: the sampling temperatures OpenAI-compatible servers accept
TEMPERATURE_RANGE = (0.0, 2.0)
#: seeds as servers take them: a signed 64-bit integer
SEED_RANGE = (-(2**63), 2**63 - 1)
#: nucleus sampling's share of probability mass
TOP_P_RANGE = (0.0, 1.0)
#: answers per request (`n`), as OpenAI bounds it
N_RANGE = (1, 128)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def out_of_bounds(name: str, value: Any) -> str | None:
    """What sampling parameter `name` should be ("a number from 0 to 2") when `value` is not that, else None. Checked
    before anything is spent: a value out of these bounds would hang a run or be refused by every server."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    real = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if name == "max_tokens" and not (whole and 1 <= value <= MAX_TOKENS_LIMIT):
        expected = f"a whole number from 1 to {MAX_TOKENS_LIMIT:,}"
    elif name == "temperature" and not (real and TEMPERATURE_RANGE[0] <= value <= TEMPERATURE_RANGE[1]):
        expected = f"a number from {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}"
    elif name == "top_p" and not (real and TOP_P_RANGE[0] <= value <= TOP_P_RANGE[1]):
        expected = f"a number from {TOP_P_RANGE[0]:g} to {TOP_P_RANGE[1]:g}"
    elif name == "n" and not (whole and N_RANGE[0] <= value <= N_RANGE[1]):
        expected = f"a whole number from {N_RANGE[0]} to {N_RANGE[1]}"
    elif name == "seed" and not (value is None or (whole and SEED_RANGE[0] <= value <= SEED_RANGE[1])):
        expected = "a whole number that fits in 64 bits (signed)"
    else:
        return None
    return expected


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters sent with a request; a value out of bounds (`out_of_bounds`) is a ConfigError."""

    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_tokens", "temperature", "seed"):
            expected = out_of_bounds(name, getattr(self, name))
            if expected is not None:
                raise ConfigError(f"{name}: expected {expected}, got {_shown(getattr(self, name))}")
        if not all(isinstance(s, str) for s in self.stop):
            raise ConfigError(f"stop: expected strings, got {_shown(self.stop)}")

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
