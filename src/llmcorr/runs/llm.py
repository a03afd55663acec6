"""Every LLM call a run makes: the response cache first, then the scheduler. Used by prompt runs and by flows.

An answer is stored once in full: in the response cache, which the rows made from it reference by `Answer.key`
(store/row_writes.py), or in its row when it is not cached; the LLM call's span keeps the first SPAN_ANSWER_CHARS of
it. An answer cut at the provider's cap (providers/openai_answer.py `max_answer_chars`) says so
in `truncation`, which a prompt run's row keeps as its `error`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..providers.base import GenParams, Message
from ..providers.openai_answer import max_answer_chars
from ..scheduler import Scheduler
from ..store import Store
from ..tracing import llm_span
from .cache import cache_key

SPAN_ANSWER_CHARS = 10_000  # an answer's characters in its span: the row holds it whole, once


def _span_answer(text: str) -> str:
    if len(text) <= SPAN_ANSWER_CHARS:
        return text
    return text[:SPAN_ANSWER_CHARS] + f"… [{len(text):,} characters in all: the row's response holds them]"


@dataclass(frozen=True)
class Answer:
    text: str
    input_tokens: int  # tokens spent: 0 for a cached answer
    output_tokens: int
    latency_ms: float
    attempts: int
    endpoint: str | None
    cached: bool
    truncation: str | None = None  # "answer truncated at 1,000,000 characters (it had 10,000,000)"
    key: str | None = None  # the response cache's key holding this text (None: not cached)


class CachedLLM:
    """Answers from the store's response cache when it has them (no tokens spent), else from the scheduler; fresh
    answers are cached as soon as they arrive, keyed by the model that gave them."""

    def __init__(self, scheduler: Scheduler, store: Store, use_cache: bool = True) -> None:
        self.scheduler = scheduler
        self.store = store
        self.use_cache = use_cache
        self.identities = {e.name: e.provider.cache_identity() for e in scheduler.endpoints}
        # OpenTelemetry GenAI semantic conventions' names for the systems behind the endpoints
        self.systems = {e.name: e.config.provider_kind.provider_name for e in scheduler.endpoints}
        self.model = "/".join(sorted({str(i.get("model") or e) for e, i in self.identities.items()}))
        self.max_chars = max_answer_chars()  # a bad LLMCORR_MAX_ANSWER_CHARS fails here, before any request

    async def complete(
        self, messages: list[Message], params: GenParams, sample: int = 0, only: str | None = None
    ) -> Answer:
        """The answer to `messages` (`only`: from that endpoint, a flow node's connection; else from any)."""
        with llm_span(self.model, [m.to_dict() for m in messages], params.to_dict()) as span:
            answer, rate_limited = await self._complete(messages, params, sample, only)
            if span is not None:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": answer.input_tokens,
                        "gen_ai.usage.output_tokens": answer.output_tokens,
                        "gen_ai.output.messages": json.dumps(
                            [{"role": "assistant", "content": _span_answer(answer.text)}]
                        ),
                        "llmcorr.answer_chars": len(answer.text),
                        "llmcorr.endpoint": answer.endpoint or "",
                        "llmcorr.cache_hit": answer.cached,
                        "llmcorr.attempts": answer.attempts,
                        "llmcorr.rate_limited": rate_limited,
                        "llmcorr.latency_ms": answer.latency_ms,
                        "llmcorr.sample": sample,
                    }
                )
                if answer.endpoint is not None:
                    span.set_attribute("gen_ai.provider.name", self.systems[answer.endpoint])
            return answer

    async def _complete(
        self, messages: list[Message], params: GenParams, sample: int, only: str | None
    ) -> tuple[Answer, int]:
        self.scheduler.pool(only)  # an endpoint the run does not have: one line, before the cache is read
        keys = {  # none without the cache: nothing is looked up or stored
            name: cache_key(ident, messages, params, sample)
            for name, ident in self.identities.items()
            if self.use_cache and (only is None or name == only)
        }
        if self.use_cache:
            hit = self.store.cached_response(list(dict.fromkeys(keys.values())))
            if hit is not None:
                cut = f"answer truncated at {self.max_chars:,} characters" if len(hit[1]) >= self.max_chars else None
                return Answer(hit[1], 0, 0, 0.0, 0, None, cached=True, truncation=cut, key=hit[0]), 0
        result = await self.scheduler.complete(messages, params, only)
        c = result.completion
        key = None
        if self.use_cache and c.text.strip():  # an empty answer is no answer: asking again may give one
            model = json.dumps(self.identities[result.endpoint], sort_keys=True, default=str)
            key = keys[result.endpoint]
            self.store.cache_put(key, model, c.text, c.input_tokens, c.output_tokens)
        had = c.extra.get("truncated_from")
        cut = f"answer truncated at {len(c.text):,} characters (it had {had:,})" if had else None
        answer = Answer(
            c.text, c.input_tokens, c.output_tokens, c.latency_ms, result.attempts, result.endpoint, False, cut, key
        )
        return answer, result.rate_limited
