"""Token counting for the quota server, shared with tests and benchmarks so both sides compute the same numbers.

    prompt_tokens = 3 + sum over messages of (4 + tokens(content) + tokens(name) if the message has a name)

That is OpenAI's published chat formula (4 tokens of framing per message, 3 to prime the reply). `content` is the
string, or the concatenated text of its ``{"type": "text"}`` parts; other parts (images, audio) count 0.

``text_tokens(text)`` uses tiktoken's cl100k_base from the file llmcorr ships (its scheduler's count) when tiktoken and
llmcorr are installed; else o200k_base or cl100k_base only when the encoding is already on disk: in tiktoken's cache
(``TIKTOKEN_CACHE_DIR``), or a ``<name>.tiktoken`` file in ``BENCH_TIKTOKEN_DIR``. While it loads, tiktoken's one
network function is swapped for one that refuses, so this module never downloads. Otherwise it falls back to
``ceil(len(utf-8 bytes) / 4)`` (``utf8_tokens``). ``tokenizer_name()`` says which one is in use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

TokenCounter = Callable[[str], int]

# after llmcorr's own file: tiktoken's cache (or BENCH_TIKTOKEN_DIR)
_ENCODINGS = ("o200k_base", "cl100k_base")
_lock = threading.Lock()
_encoding: Any = None
_encoding_name: str | None = None
_loaded = False


def utf8_tokens(text: str) -> int:
    """The fallback count: one token per 4 bytes of UTF-8, rounded up."""
    return -(-len(text.encode("utf-8")) // 4)


def _offline_reader(original: Callable[[str], bytes]) -> Callable[[str], bytes]:
    bundled_dir = os.environ.get("BENCH_TIKTOKEN_DIR", "")

    def read_file(blobpath: str) -> bytes:
        if "://" not in blobpath:  # a local path is not a download
            return original(blobpath)
        bundled = os.path.join(bundled_dir, blobpath.rsplit("/", 1)[-1]) if bundled_dir else ""
        if bundled and os.path.isfile(bundled):
            with open(bundled, "rb") as fh:
                return fh.read()
        raise OSError(f"quota server: {blobpath} is not on disk and will not be downloaded")

    return read_file


def _load_encoding() -> None:
    global _encoding, _encoding_name, _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        try:
            import tiktoken
            import tiktoken.load
        except ImportError:
            return
        try:  # the file llmcorr ships: the same counts as its scheduler's
            from llmcorr.scheduler.tokens import cl100k_encoding

            _encoding, _encoding_name = cl100k_encoding(), "cl100k_base"
            if _encoding is not None:
                return
        except ImportError:  # the quota server without llmcorr
            pass
        original = tiktoken.load.read_file
        setattr(tiktoken.load, "read_file", _offline_reader(original))  # noqa: B010 (patched for this load only)
        try:
            for name in _ENCODINGS:
                try:
                    _encoding = tiktoken.get_encoding(name)
                except Exception:  # not cached, corrupt, or an old tiktoken without this encoding
                    continue
                _encoding_name = name
                return
        finally:
            setattr(tiktoken.load, "read_file", original)  # noqa: B010


def tokenizer_name() -> str:
    """The tiktoken encoding in use (e.g. ``"cl100k_base"``), or ``"utf8/4"`` for the fallback."""
    _load_encoding()
    return _encoding_name or "utf8/4"


def text_tokens(text: str) -> int:
    """Tokens in `text` with the default tokenizer (see the module docstring)."""
    _load_encoding()
    if _encoding is None:
        return utf8_tokens(text)
    return len(_encoding.encode(text, disallowed_special=()))


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") in ("text", None)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]], count: TokenCounter | None = None) -> int:
    """Prompt tokens of a chat request, exactly as the quota server counts them (see the module docstring)."""
    count = count or text_tokens
    total = 3
    for message in messages:
        total += 4 + count(content_text(message.get("content")))
        name = message.get("name")
        if isinstance(name, str):
            total += count(name)
    return total


def chars4_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens as a server with another tokenizer might count them: ceil(characters of every message's content
    / 4), no framing (the quota server's ``prompt_count="chars4"``)."""
    return -(-sum(len(content_text(m.get("content"))) for m in messages) // 4)


def truncate_to_tokens(text: str, limit: int, count: TokenCounter | None = None) -> str:
    """The longest prefix of `text` that counts at most `limit` tokens (binary search; any monotone counter)."""
    count = count or text_tokens
    if count(text) <= limit:
        return text
    lo, hi = 0, len(text)  # count(text[:lo]) <= limit < count(text[:hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid
    return text[:lo]
