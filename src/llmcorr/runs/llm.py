"""Every LLM call a run makes: the response cache first, then the scheduler. Used by prompt runs and by flows."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..providers.base import GenParams, Message
from ..scheduler import Scheduler
from ..store import Store
from ..tracing import llm_span
from .cache import cache_key

# OpenTelemetry GenAI semantic conventions' names for the systems behind each endpoint kind
_PROVIDER_NAMES = {"openai": "openai", "azure": "azure.ai.openai", "local": "llama_cpp"}


@dataclass(frozen=True)
class Answer:
    text: str
    input_tokens: int  # tokens spent: 0 for a cached answer
    output_tokens: int
    latency_ms: float
    attempts: int
    endpoint: str | None
    cached: bool


class CachedLLM:
    """Answers from the store's response cache when it has them (no tokens spent), else from the scheduler; fresh
    answers are cached as soon as they arrive, keyed by the model that gave them."""

    def __init__(self, scheduler: Scheduler, store: Store, use_cache: bool = True) -> None:
        self.scheduler = scheduler
        self.store = store
        self.use_cache = use_cache
        self.identities = {e.name: e.provider.cache_identity() for e in scheduler.endpoints}
        self.model = "/".join(sorted({str(i.get("model") or e) for e, i in self.identities.items()}))

    async def complete(self, messages: list[Message], params: GenParams, sample: int = 0) -> Answer:
        with llm_span(self.model, [m.to_dict() for m in messages], params.to_dict()) as span:
            answer, rate_limited = await self._complete(messages, params, sample)
            if span is not None:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": answer.input_tokens,
                        "gen_ai.usage.output_tokens": answer.output_tokens,
                        "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": answer.text}]),
                        "llmcorr.endpoint": answer.endpoint or "",
                        "llmcorr.cache_hit": answer.cached,
                        "llmcorr.attempts": answer.attempts,
                        "llmcorr.rate_limited": rate_limited,
                        "llmcorr.latency_ms": answer.latency_ms,
                        "llmcorr.sample": sample,
                    }
                )
                if answer.endpoint is not None:
                    kind = str(self.identities[answer.endpoint].get("kind"))
                    span.set_attribute("gen_ai.provider.name", _PROVIDER_NAMES.get(kind, kind))
            return answer

    async def _complete(self, messages: list[Message], params: GenParams, sample: int) -> tuple[Answer, int]:
        keys = {name: cache_key(ident, messages, params, sample) for name, ident in self.identities.items()}
        if self.use_cache:
            hit = self.store.cached_response(list(dict.fromkeys(keys.values())))
            if hit is not None:
                return Answer(hit[1], 0, 0, 0.0, 0, None, cached=True), 0
        result = await self.scheduler.complete(messages, params)
        c = result.completion
        if self.use_cache:
            model = json.dumps(self.identities[result.endpoint], sort_keys=True, default=str)
            self.store.cache_put(keys[result.endpoint], model, c.text, c.input_tokens, c.output_tokens)
        answer = Answer(c.text, c.input_tokens, c.output_tokens, c.latency_ms, result.attempts, result.endpoint, False)
        return answer, result.rate_limited
