"""Every LLM call a run makes: the response cache first, then the scheduler. Used by prompt runs and by flows."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..providers.base import GenParams, Message
from ..scheduler import Scheduler
from ..store import Store
from .cache import cache_key


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

    async def complete(self, messages: list[Message], params: GenParams, sample: int = 0) -> Answer:
        keys = {name: cache_key(ident, messages, params, sample) for name, ident in self.identities.items()}
        if self.use_cache:
            hit = self.store.cached_response(list(dict.fromkeys(keys.values())))
            if hit is not None:
                return Answer(hit[1], 0, 0, 0.0, 0, None, cached=True)
        result = await self.scheduler.complete(messages, params)
        c = result.completion
        if self.use_cache:
            model = json.dumps(self.identities[result.endpoint], sort_keys=True, default=str)
            self.store.cache_put(keys[result.endpoint], model, c.text, c.input_tokens, c.output_tokens)
        return Answer(c.text, c.input_tokens, c.output_tokens, c.latency_ms, result.attempts, result.endpoint, False)
