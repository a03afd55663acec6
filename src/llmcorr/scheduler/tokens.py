"""Count prompt tokens before a request is sent, the way the server will charge them.

OpenAI charges a chat request's prompt as: per message 4 tokens + the content's tokens, plus 3 tokens priming the
reply. Content is counted with tiktoken's cl100k_base, built from the encoding file shipped inside llmcorr
(`encodings/cl100k_base.tiktoken`, OpenAI's file, checked against its published SHA-256): never downloaded, and no
cache directory written. This is the *raw* count. Servers that tokenize differently are handled
by calibration (scheduler/endpoint.py): each endpoint learns the ratio of the prompt tokens its server reports in
`usage` to the raw counts of the same requests, and a charge is the raw count times that ratio at admission.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..providers.base import Message

TokenCounter = Callable[[str], int]
PER_MESSAGE = 4
REPLY_PRIMING = 3


def bytes_estimate(text: str) -> int:
    """A tokenizer-free estimate: about four UTF-8 bytes per token."""
    return math.ceil(len(text.encode("utf-8")) / 4)


CL100K_FILE = Path(__file__).with_name("encodings") / "cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # tiktoken's expected_hash for it
# cl100k_base's split pattern and special tokens, as tiktoken_ext.openai_public defines them
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


@functools.cache
def cl100k_encoding() -> Any:
    """tiktoken's cl100k_base from the file shipped in llmcorr, or None where tiktoken is not installed."""
    try:
        import tiktoken
    except ImportError:
        return None
    data = CL100K_FILE.read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise RuntimeError(f"{CL100K_FILE}: not the cl100k_base file (its SHA-256 differs): reinstall llmcorr")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIAL
    )


@functools.cache
def tiktoken_counter() -> TokenCounter:
    """cl100k_base from the shipped file; the byte estimate where tiktoken is not installed."""
    encoding = cl100k_encoding()
    if encoding is None:
        return bytes_estimate

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


def chat_prompt_tokens(messages: list[Message], count: TokenCounter) -> int:
    """Prompt tokens of a chat request under OpenAI's accounting."""
    return sum(PER_MESSAGE + count(m.content) for m in messages) + REPLY_PRIMING
