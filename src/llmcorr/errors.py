"""llmcorr's one exception tree.

```
LlmcorrError
├── RunCancelled              a run was asked to stop (`runs cancel`, Ctrl-C): finished rows are kept
├── StoreError                the store could not be written (disk full, I/O error, file-size limit). CLI: exit code 1
├── OutputError               an output file could not be written (its rows are in the store). CLI: exit code 1
├── UserError                 the user can fix it: bad data, bad config, bad template. CLI: one line, exit code 2.
│   ├── DataError             a predictions/data file or DataFrame is unreadable or does not fit
│   ├── ConfigError           a bad option, provider setting or missing environment variable
│   ├── TemplateError         a prompt template that does not load or render
│   └── NotFoundError         a run id or name that the store does not know
└── ProviderError             an LLM endpoint failed; the scheduler decides what to do with it
    ├── RateLimitError        429 or equivalent; carries retry_after (seconds) when the server said
    ├── TransientError        5xx, timeout, connection reset: worth a bounded retry
    ├── RequestRejected       a 4xx about this request (400, 413, 422, a content filter): that row fails, not retried
    └── FatalProviderError    4xx other than 429, a model that does not load: never retried
        └── QuotaExhaustedError   a daily / billing quota is spent: the run stops cleanly
```

Foreign exceptions (aiohttp, llama.cpp, pandas) are translated into these at the boundary that calls them.
Messages never contain secrets: providers build them from status codes and server messages, never headers.
"""

from __future__ import annotations

import shlex
from typing import Any


class LlmcorrError(Exception):
    """Base of every error llmcorr raises on purpose."""


class RunCancelled(LlmcorrError):
    """The run was asked to stop; its finished rows are kept and it can be resumed."""


class StoreError(LlmcorrError):
    """The store could not be written: disk full, an I/O error, a file-size limit (store/failures.py translates the
    database's own errors into this). Not bad input: the run is marked `failed` (if the store still takes that; else
    it shows as `interrupted` when the store is next opened), its committed rows kept, and it resumes once there is
    room. The engine fills in the run's fields; `line()` is what the CLI prints."""

    def __init__(self, location: object, reason: str) -> None:
        super().__init__(location, reason)
        self.location = str(location)  # a file, or a PostgreSQL URL printed without its password
        self.reason = reason  # "disk full", "I/O error", ...
        self.run: str | None = None  # the run's name (or id), once known
        self.rows_kept = 0  # rows committed and not failed
        self.rows_total = 0
        self.rows_lost = 0  # rows answered (and paid for) whose commit failed: a resume asks for them again
        self.marked = False  # whether the store took the run's `failed` status

    def line(self, config_path: str | None = None) -> str:
        """`the store at PATH could not be written (disk full): run NAME failed; 37 of 200 rows kept; ...`."""
        text = f"the store at {self.location} could not be written ({self.reason})"
        if self.run is None:
            return text + "; free space, then try again"
        command = "llmcorr runs resume " + shlex.quote(self.run)
        if config_path:
            command += " --config " + shlex.quote(config_path)
        state = "failed" if self.marked else "stopped (it shows as interrupted)"
        lost = (
            f"; the answers of {self.rows_lost} finished rows could not be stored (a resume asks for them again)"
            if self.rows_lost
            else ""
        )
        kept = f"{self.rows_kept} of {self.rows_total} rows kept"
        return f"{text}: run {self.run} {state}; {kept}{lost}; free space, then `{command}`"

    def __str__(self) -> str:
        return self.line()


class OutputError(LlmcorrError):
    """An output file could not be written (disk full, a read-only folder, a file-size limit). Not bad input: the
    run's rows are in the store (`runs resume` of a completed run writes the file again, asking nothing). The CLI
    prints the line, exit code 1."""

    def __init__(self, path: object, reason: str, run: str | None = None) -> None:
        super().__init__(path, reason, run)
        self.path, self.reason, self.run = str(path), reason, run

    def __str__(self) -> str:
        text = f"{self.path} could not be written ({self.reason})"
        if self.run is None:
            return text
        command = "llmcorr runs resume " + shlex.quote(self.run)
        return f"{text}: run {self.run} has every row it finished in the store; make room, then `{command}` writes it"


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
    """A failure worth a bounded retry: 5xx, timeout, dropped connection, malformed response. An answer that came
    but was no answer (empty, not text) may still have been billed: `input_tokens`/`output_tokens` are what the
    server reported for it (0 when nothing came), counted in the run's usage."""

    input_tokens: int = 0
    output_tokens: int = 0


class FatalProviderError(ProviderError):
    """A failure that retrying cannot fix: bad request, bad key, exhausted quota, unloadable model."""


class QuotaExhaustedError(FatalProviderError):
    """A daily or billing quota is spent; retrying today cannot help."""


# A request the server refuses for what it holds: only its own row fails.


class RequestRejected(ProviderError):
    """The server refused this request for what it holds (HTTP 400, 413, 422, a content filter): sending it again
    gets the same answer, so it is not retried, and only its row fails, with the server's message. Not fatal: the
    endpoint itself works (a 401, 403 or 404 is `FatalProviderError`)."""


__all__ = [
    "ConfigError",
    "DataError",
    "FatalProviderError",
    "LlmcorrError",
    "NotFoundError",
    "OutputError",
    "ProviderError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RequestRejected",
    "RunCancelled",
    "StoreError",
    "TemplateError",
    "TransientError",
    "UserError",
]
