"""The OpenAI provider reads any valid JSON an endpoint answers defensively (issue 13, items 2, 5 and 14): text parts
joined, anything but text a malformed answer (retried, then that row's error), empty answers malformed, usage counts
clamped to sane non-negative integers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from llmcorr.errors import TransientError
from llmcorr.providers.base import Completion, GenParams, Message, Provider
from llmcorr.providers.openai import OpenAIProvider, _Response
from llmcorr.runs.llm import CachedLLM
from llmcorr.scheduler import Scheduler
from llmcorr.store import Store

URL = "http://127.0.0.1:9/v1/chat/completions"
KEY = "sk-parse-test-0123456789-SECRET"
MAX = 100_000_000  # providers/openai_answer.py MAX_USAGE_TOKENS


def body(content: Any = "yes", finish: Any = "stop", usage: Any = None, **message: Any) -> dict[str, Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 2} if usage is None else usage
    choice = {"index": 0, "message": {"role": "assistant", "content": content, **message}, "finish_reason": finish}
    return {"model": "m", "choices": [choice], "usage": usage}


def parse(answer: Any, *max_tokens: int) -> Completion:
    response = _Response(200, {}, json.dumps(answer).encode())
    return OpenAIProvider("m", base_url="http://127.0.0.1:9/v1")._parse(URL, response, 1.0, KEY, *max_tokens)


def malformed(answer: Any, *max_tokens: int) -> str:
    with pytest.raises(TransientError) as caught:
        parse(answer, *max_tokens)
    message = str(caught.value)
    assert message.startswith(f"{URL}: malformed response: ") and "\n" not in message
    return message


def test_a_list_of_parts_is_its_text_parts_joined() -> None:
    parts = [{"type": "text", "text": "Prediction: "}, {"type": "image_url", "image_url": {}}, "True", {"text": "!"}]
    completion = parse(body(parts))
    assert completion.text == "Prediction: True!"
    assert completion.input_tokens == 5 and completion.output_tokens == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [(42, "content is a number (42), not text"), ({"a": 1}, "content is an object"), (True, "content is a boolean")],
)
def test_content_that_is_not_text_is_a_malformed_answer(content: Any, says: str) -> None:
    assert says in malformed(body(content))


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (body(""), "empty answer (content '', finish_reason 'stop')"),
        (body(None), "empty answer (content null, finish_reason 'stop')"),
        (body("  \n"), "empty answer (content a string '  \\n'"),
        (body([{"type": "text", "text": ""}]), "empty answer (content a list"),
        (body("", finish="length"), "finish_reason 'length'): max_tokens ran out before any text"),
        (body(None, refusal="I can't help with that."), "the model refused: I can't help with that."),
    ],
)
def test_an_empty_answer_is_a_malformed_answer_saying_what_came_back(answer: Any, says: str) -> None:
    assert says in malformed(answer)


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ([1, 2], "the body is a list, not an object"),
        ({"choices": {"0": 1}}, "choices is an object"),
        ({"usage": {}}, "choices is missing"),
        ({"choices": ["text"]}, "choices[0] has no message object"),
    ],
)
def test_json_of_another_shape_is_a_malformed_answer(answer: Any, says: str) -> None:
    assert says in malformed(answer)


def test_an_empty_answer_cut_by_length_names_the_max_tokens_it_spent() -> None:
    assert "max_tokens (4) ran out before any text; raise max_tokens" in malformed(body("", finish="length"), 4)


@pytest.mark.parametrize(
    ("prompt", "completion", "expected"),
    [
        (2**70, 10**30, (MAX, MAX)),
        (-7, -3, (0, 0)),
        ("12", "many", (12, 0)),
        (3.9, None, (3, 0)),
        (True, [1], (0, 0)),
        (1e400, float("nan"), (MAX, 0)),  # json writes these as Infinity and NaN, which Python reads back
    ],
)
def test_usage_counts_are_clamped_to_sane_non_negative_integers(prompt: Any, completion: Any, expected: Any) -> None:
    parsed = parse(body(usage={"prompt_tokens": prompt, "completion_tokens": completion}))
    assert (parsed.input_tokens, parsed.output_tokens) == expected
    assert all(type(n) is int for n in expected)
    assert parse(body(usage="lots")).total_tokens == 0  # usage that is not an object: unknown


def test_lone_surrogates_and_an_echoed_key_never_reach_the_text() -> None:
    text = parse(body(f"a\ud800b {KEY}")).text
    assert text == "a\ufffdb [REDACTED]"
    text.encode("utf-8")  # a store and a file can take it
    assert KEY not in malformed(body({"key": KEY}, usage={}))


class Blank(Provider):
    """Answers every request with empty text (as an embedded model can)."""

    kind = "blank"
    calls = 0

    @property
    def model(self) -> str:
        return "blank"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.calls += 1
        return Completion(text=" ", input_tokens=3, output_tokens=0, latency_ms=1.0, model="blank")


def test_an_empty_answer_is_never_cached(tmp_path: Path) -> None:
    provider = Blank()
    with Store(tmp_path / "llmcorr.db") as store:
        llm = CachedLLM(Scheduler(provider), store)
        messages = [Message("user", "Define w0.")]
        answers = [asyncio.run(llm.complete(messages, GenParams(max_tokens=4))) for _ in range(2)]
        store.flush_cache()
        assert store.conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0] == 0
    assert provider.calls == 2 and not any(a.cached for a in answers)  # asked again, not answered from the cache
