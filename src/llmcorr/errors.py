"""llmcorr's one exception tree.

```
LlmcorrError
├── RunCancelled              a run was asked to stop (`runs cancel`, Ctrl-C): finished rows are kept
├── UserError                 the user can fix it: bad data, bad config, bad template. CLI: one line, exit code 2.
│   ├── DataError             a predictions/data file or DataFrame is unreadable or does not fit
│   ├── ConfigError           a bad option, provider setting or missing environment variable
│   ├── TemplateError         a prompt template that does not load or render
│   └── NotFoundError         a run id or name that the store does not know
└── ProviderError             an LLM endpoint failed; the scheduler decides what to do with it
    ├── RateLimitError        429 or equivalent; carries retry_after (seconds) when the server said
    ├── TransientError        5xx, timeout, connection reset: worth a bounded retry
    └── FatalProviderError    4xx other than 429, a model that does not load: never retried
        └── QuotaExhaustedError   a daily / billing quota is spent: the run stops cleanly
```

Foreign exceptions (httpx, llama.cpp, pandas) are translated into these at the boundary that calls them.
Messages never contain secrets: providers build them from status codes and server messages, never headers.
"""

from __future__ import annotations

from typing import Any


class LlmcorrError(Exception):
    """Base of every error llmcorr raises on purpose."""


class RunCancelled(LlmcorrError):
    """The run was asked to stop; its finished rows are kept and it can be resumed."""


class UserError(LlmcorrError):
    """Something the user can fix. The CLI prints its message as one line and exits with code 2."""

    exit_code = 2


class DataError(UserError):
    """A data file or DataFrame that cannot be read or does not fit what was asked."""


class ConfigError(UserError):
    """A bad option, provider setting or missing environment variable."""


class TemplateError(UserError):
    """A prompt template that does not load or render."""


class NotFoundError(UserError):
    """A run id or name that the store does not know."""


class ProviderError(LlmcorrError):
    """An LLM endpoint failed."""


class RateLimitError(ProviderError):
    """The endpoint asked us to slow down (HTTP 429). `ratelimit` holds its x-ratelimit-* headers, if any."""

    def __init__(self, message: str, retry_after: float | None = None, ratelimit: Any = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.ratelimit = ratelimit


class TransientError(ProviderError):
    """A failure worth a bounded retry: 5xx, timeout, dropped connection, malformed response."""


class FatalProviderError(ProviderError):
    """A failure that retrying cannot fix: bad request, bad key, exhausted quota, unloadable model."""


class QuotaExhaustedError(FatalProviderError):
    """A daily or billing quota is spent; retrying today cannot help."""


__all__ = [
    "ConfigError",
    "DataError",
    "FatalProviderError",
    "LlmcorrError",
    "NotFoundError",
    "ProviderError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RunCancelled",
    "TemplateError",
    "TransientError",
    "UserError",
]
