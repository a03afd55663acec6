"""Reading an OpenAI-shaped chat-completion body defensively: whatever valid JSON a server sends, the result is text
and two sane token counts, or a `MalformedAnswer` saying what came back (the provider makes it a `TransientError`:
that try failed, the scheduler retries within its budget, and a row whose tries all fail is an error row).

- `content` a string: the answer. A list of parts (which OpenAI-compatible servers do send): the text parts joined.
  A number, an object, `true`: malformed.
- Empty, whitespace-only or `null` content (a refusal, or `finish_reason` "length" before any text): malformed, so
  it is retried and never cached as an answer; the message names what came back.
- `usage` counts: non-negative integers of at most `MAX_USAGE_TOKENS`. A negative count, or one that is not a number,
  reads as 0; a larger one (a server's 2**70) as `MAX_USAGE_TOKENS`; a numeric string or a float is rounded down.
- Lone UTF-16 surrogates (`"\\ud800"` is valid JSON) become U+FFFD: no store or file can take them.
- An answer longer than `max_answer_chars()` (1,000,000 characters; `LLMCORR_MAX_ANSWER_CHARS` changes it) is cut
  there, and `truncated_from` says how long it was: a runaway server cannot fill the store (the row keeps the
  truncation in its `error`, its status unchanged). A body of more than `BODY_BYTES_PER_CHAR` bytes per character
  kept (64 MB by default) is not read at all (`max_body_bytes`): that try fails, and memory stays bounded.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, TransientError

# more tokens than any request can use (the largest context windows hold 10M): a count past it is a server's bug,
# and clamping it keeps a run's sums far inside 64 bits
MAX_USAGE_TOKENS = 100_000_000
_SURROGATE = re.compile("[\ud800-\udfff]")
_TEXT_PARTS = ("text", "output_text")
MAX_ANSWER_CHARS = 1_000_000  # an answer's characters kept: far past any useful reply, far below a runaway one
MAX_ANSWER_ENV = "LLMCORR_MAX_ANSWER_CHARS"
BODY_BYTES_PER_CHAR = 64  # room for JSON escapes (6 bytes a character), several choices and whatever else is sent


def max_answer_chars() -> int:
    """The most characters of an answer kept: `LLMCORR_MAX_ANSWER_CHARS`, else MAX_ANSWER_CHARS."""
    raw = os.environ.get(MAX_ANSWER_ENV, "").strip()
    if not raw:
        return MAX_ANSWER_CHARS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_ANSWER_ENV}: expected a whole number of characters (at least 1), got {raw[:40]!r}")
    return int(raw)


class MalformedAnswer(ValueError):
    """Valid JSON that is not an answer; the message says what came back (one line)."""


def max_body_bytes() -> int:
    """The largest response body read: `BODY_BYTES_PER_CHAR` bytes per character of `max_answer_chars()`."""
    return BODY_BYTES_PER_CHAR * max_answer_chars()


@dataclass(frozen=True)
class ParsedAnswer:
    text: str
    input_tokens: int
    output_tokens: int
    model: str | None
    finish_reason: str | None
    truncated_from: int | None = None  # the answer's length when it was cut at max_answer_chars()


def token_count(value: object) -> int:
    """A usage count as a sane non-negative int (see the module docstring)."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return 0
    if isinstance(value, float):
        if math.isnan(value):
            return 0
        value = MAX_USAGE_TOKENS if value > MAX_USAGE_TOKENS else math.floor(value) if value > 0 else 0
    if not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_USAGE_TOKENS)


def _shown(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def content_text(content: object) -> str | None:
    """The text of a message's `content`: a string, or a list of parts whose text parts are joined ("" for null);
    None when it is anything else."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts)


def _refusal(message: dict[str, Any]) -> str | None:
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        return refusal
    content = message.get("content")
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            return str(part["refusal"])
    return None


def _empty(message: dict[str, Any], finish: str | None, max_tokens: int | None) -> MalformedAnswer:
    content = message.get("content")
    shown = "null" if content is None else "''" if content == "" else f"{_kind(content)} {_shown(content)}"
    what = f"empty answer (content {shown}, finish_reason {_shown(finish)})"
    refusal = _refusal(message)
    if refusal is not None:
        return MalformedAnswer(f"{what}: the model refused: {' '.join(refusal.split())[:120]}")
    if finish == "length":
        budget = f" ({max_tokens})" if max_tokens is not None else ""
        return MalformedAnswer(f"{what}: max_tokens{budget} ran out before any text; raise max_tokens")
    return MalformedAnswer(what)


def unanswered(message: str, body: object) -> TransientError:
    """The error for a try answered with no answer: worth a retry, counting the tokens the body says it billed."""
    error = TransientError(message)
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        error.input_tokens = token_count(usage.get("prompt_tokens"))
        error.output_tokens = token_count(usage.get("completion_tokens"))
    return error


def read_answer(body: object, max_tokens: int | None = None, max_chars: int | None = None) -> ParsedAnswer:
    """The answer in a decoded chat-completion body, cut at `max_chars` (default: `max_answer_chars()`);
    `MalformedAnswer` when there is none (module docstring)."""
    if not isinstance(body, dict):
        raise MalformedAnswer(f"unexpected JSON: the body is {_kind(body)}, not an object")
    choices = body.get("choices")
    if isinstance(choices, list) and not choices:
        raise MalformedAnswer("empty choices")
    if not isinstance(choices, list):
        raise MalformedAnswer(f"unexpected JSON: choices is {'missing' if choices is None else _kind(choices)}")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise MalformedAnswer("unexpected JSON: choices[0] has no message object")
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    content = message.get("content")
    text = content_text(content)
    if text is None:
        raise MalformedAnswer(f"content is {_kind(content)} ({_shown(content)}), not text")
    if not text.strip():
        raise _empty(message, finish, max_tokens)
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    model = body.get("model")
    limit = max_answer_chars() if max_chars is None else max_chars
    return ParsedAnswer(
        text=_SURROGATE.sub("\ufffd", text[:limit]),
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
        model=model if isinstance(model, str) and model else None,
        finish_reason=finish,
        truncated_from=len(text) if len(text) > limit else None,
    )
