"""scheduler/tokens.py: cl100k_base built from the encoding file llmcorr ships, never downloaded or cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmcorr.providers.base import Message
from llmcorr.scheduler import tokens


def test_cl100k_from_the_shipped_file_counts_as_openai_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"  # tiktoken's download cache: nothing may be read from or written to it
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    tokens.cl100k_encoding.cache_clear()
    try:
        encoding = tokens.cl100k_encoding()
        assert encoding.encode("hello world") == [15339, 1917]  # cl100k_base's own ids
        assert encoding.encode("<|endoftext|>", allowed_special="all") == [100257]
        assert encoding.n_vocab == 100277
        assert not cache.exists() or not os.listdir(cache)
    finally:
        tokens.cl100k_encoding.cache_clear()
    messages = [Message("system", "be brief"), Message("user", "hello world")]
    assert tokens.chat_prompt_tokens(messages, tokens.tiktoken_counter()) == 3 + (4 + 2) + (4 + 2)


def test_a_changed_encoding_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "cl100k_base.tiktoken"
    broken.write_bytes(tokens.CL100K_FILE.read_bytes()[:-10])
    monkeypatch.setattr(tokens, "CL100K_FILE", broken)
    tokens.cl100k_encoding.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="SHA-256 differs"):
            tokens.cl100k_encoding()
    finally:
        tokens.cl100k_encoding.cache_clear()
