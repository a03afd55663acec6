"""prompts/preview.py: what a prompt would send, counted at an endpoint, for `llmcorr prompt preview` and the
dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcorr.config import EndpointConfig
from llmcorr.errors import TemplateError, UserError
from llmcorr.prompts.preview import parse_inputs, preview, prompty_from_text
from llmcorr.prompts.prompty import load_prompty
from llmcorr.providers import local
from llmcorr.scheduler.tokens import bytes_estimate, chat_prompt_tokens, tiktoken_counter

PROMPTY = """---
name: Define
model:
  parameters:
    max_tokens: 10
inputs:
  word:
    type: string
  style:
    default: plainly
sample:
  word: enzyme
---
system:
You define words {{ style }}.
user:
Define {{ word }}.
"""
PRICED = EndpointConfig(
    name="east", kind="openai", model="m", base_url="http://127.0.0.1:9/v1", price_in=2, price_out=8
)


def test_preview_counts_the_rendered_messages_and_prices_the_worst_case(tmp_path: Path) -> None:
    (tmp_path / "define.prompty").write_text(PROMPTY)
    shown = preview(load_prompty(tmp_path / "define.prompty"), {"word": "acid"}, PRICED)
    assert [m.content for m in shown.messages] == ["You define words plainly.", "Define acid."]
    assert shown.prompt_tokens == chat_prompt_tokens(shown.messages, tiktoken_counter())
    assert shown.max_tokens == 10 and shown.endpoint == "east"
    assert shown.cost_max == pytest.approx((shown.prompt_tokens * 2 + 10 * 8) / 1e6)
    assert shown.summary().startswith(f"2 messages · {shown.prompt_tokens} prompt tokens (east) · up to 10 completion")


def test_a_local_preview_loads_no_model_and_says_its_count_is_approximate(tmp_path: Path) -> None:
    (tmp_path / "define.prompty").write_text(PROMPTY)
    before = dict(local._models)
    shown = preview(load_prompty(tmp_path / "define.prompty"), {"word": "acid"}, EndpointConfig(name="local"))
    assert local._models == before  # nothing loaded (a dashboard's preview must not pin a model in memory)
    assert shown.prompt_tokens == chat_prompt_tokens(shown.messages, bytes_estimate) and shown.cost_max is None
    assert shown.summary().startswith(f"2 messages · about {shown.prompt_tokens} prompt tokens (local)")


def test_typed_prompts_whole_files_or_bare_templates() -> None:
    whole = prompty_from_text(PROMPTY)
    assert whole.sample == {"word": "enzyme"} and list(whole.inputs) == ["word", "style"]
    bare = prompty_from_text("user:\nSay {{ word }}.")
    assert [m.content for m in bare.render({"word": "hi"})] == ["Say hi."]
    with pytest.raises(TemplateError, match=r"^pasted\.prompty:2: "):
        prompty_from_text("user:\n{{ word ").render({})
    with pytest.raises(TemplateError, match=r"pasted\.prompty:3: .*'nope' is undefined"):
        prompty_from_text("system:\nHi.\n{{ nope }}").render({})


@pytest.mark.parametrize(
    ("text", "message"),
    [("{bad", "inputs: not valid JSON (Expecting property name"), ("[1]", "inputs: expected a JSON object")],
)
def test_inputs_that_are_not_a_json_object_are_one_line(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_inputs(text, "inputs")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert parse_inputs('{"a": 1}') == {"a": 1}
