"""The quota server's answer-shape faults: a 200 whose body is valid JSON but not the answer a client expects.

Each is a `*_rate` knob like the other faults (drawn per admitted request, after them, from the same seeded RNG);
the request is charged and counted as served, as a real server would:

    parts_content    content as a list of text parts (OpenAI-compatible servers do send this): the reply, in two
    numeric_content  content a number (42)
    huge_usage       usage counts past 64 bits (prompt_tokens 2**70, completion_tokens 10**30)
    negative_usage   negative usage counts
    empty_content    content "" (finish_reason "stop")
    null_content     content null
    length_empty     content "" with finish_reason "length" (max_tokens spent before any text)
    huge_answer      content `huge_answer_chars` long (10 MB by default), whatever max_tokens said: a runaway server

and one that is not drawn but aimed at rows: a "poisoned row", a request whose messages hold `reject_marker`, is
answered `reject_status` (400 by default: a content filter, a prompt too long) with an OpenAI-style error body, on
every try, before any quota is charged (`rejection`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SHAPES = (
    "parts_content",
    "numeric_content",
    "huge_usage",
    "negative_usage",
    "empty_content",
    "null_content",
    "length_empty",
    "huge_answer",
)


@dataclass
class AnswerShapeFaults:
    """The answer-shape knobs of QuotaServerConfig (bench/quota_emulator.py): probabilities per admitted request."""

    parts_content_rate: float = 0.0
    """Probability of content as a list of two text parts (together the reply)."""
    numeric_content_rate: float = 0.0
    """Probability of content 42."""
    huge_usage_rate: float = 0.0
    """Probability of usage counts past 64 bits."""
    negative_usage_rate: float = 0.0
    """Probability of negative usage counts."""
    empty_content_rate: float = 0.0
    """Probability of content ""."""
    null_content_rate: float = 0.0
    """Probability of content null."""
    length_empty_rate: float = 0.0
    """Probability of content "" with finish_reason "length"."""
    huge_answer_rate: float = 0.0
    """Probability of content `huge_answer_chars` characters long (the reply repeated), max_tokens ignored."""
    huge_answer_chars: int = 10_000_000
    """How long a huge answer is."""
    reject_marker: str | None = None
    """A request whose messages contain this text is refused with `reject_status` (a poisoned row); None: none is."""
    reject_status: int = 400
    """The status a poisoned row gets: 400, 413, 422 (about the request) or 401, 403, 404 (about the endpoint)."""


_REJECTIONS = {
    400: ("The response was filtered due to the prompt triggering content management policy.", "content_filter"),
    401: ("Incorrect API key provided.", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "permission_denied"),
    404: ("The model does not exist or you do not have access to it.", "model_not_found"),
    413: ("Request body too large.", "request_too_large"),
    422: ("Unprocessable request: the messages could not be read.", "unprocessable_entity"),
}


def rejection(messages: list[dict[str, Any]], marker: str | None, status: int) -> tuple[int, dict[str, Any]] | None:
    """The (status, OpenAI-style error body) a poisoned row gets, or None when `messages` do not hold `marker`."""
    if not marker or marker not in json.dumps(messages, ensure_ascii=False):
        return None
    message, code = _REJECTIONS.get(status, ("The request was rejected.", "rejected"))
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def reshape(fault: str, body: dict[str, Any], huge_chars: int = 10_000_000) -> None:
    """Turn a well-formed chat-completion `body` into the answer-shape `fault`, in place (`huge_chars`: the length
    of a huge answer)."""
    choice = body["choices"][0]
    message, usage = choice["message"], body["usage"]
    text: str = message["content"]
    if fault == "parts_content":
        half = len(text) // 2
        message["content"] = [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}]
    elif fault == "numeric_content":
        message["content"], choice["finish_reason"] = 42, "stop"
    elif fault == "huge_usage":
        usage.update(prompt_tokens=2**70, completion_tokens=10**30, total_tokens=2**70 + 10**30)
    elif fault == "negative_usage":
        usage.update(prompt_tokens=-7, completion_tokens=-3, total_tokens=-10)
    elif fault in ("empty_content", "length_empty"):
        message["content"] = ""
        choice["finish_reason"] = "length" if fault == "length_empty" else "stop"
    elif fault == "null_content":
        message["content"], choice["finish_reason"] = None, "stop"
    elif fault == "huge_answer":
        unit = (text or "x") + " "
        message["content"], choice["finish_reason"] = (unit * (huge_chars // len(unit) + 1))[:huge_chars], "stop"
        usage.update(completion_tokens=huge_chars // 4, total_tokens=usage["prompt_tokens"] + huge_chars // 4)
    else:
        raise ValueError(f"unknown answer-shape fault {fault!r}")
