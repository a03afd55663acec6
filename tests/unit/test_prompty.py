from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcorr.errors import TemplateError
from llmcorr.prompts.prompty import load_prompty

PROMPTY = """---
name: Ask
description: One-line answers
model:
    api: chat
    configuration:
        type: azure_openai
        azure_endpoint: ${env:TEST_ENDPOINT}
        azure_deployment: gpt-4o-mini
        api_key: ${env:TEST_SECRET_KEY}
    parameters:
        max_tokens: 24
        temperature: 0.2
        stop: ["\\n\\n"]
inputs:
  question:
    type: string
  style:
    type: string
    default: briefly
  history:
    type: list
    default: []
sample:
  question: What is aspirin used for?
---
system:
You answer {{ style }}.
{% for turn in history %}
{{ turn.role }}:
{{ turn.content }}
{% endfor %}
user:
{{ question }}
"""


def write(tmp_path: Path, text: str, name: str = "ask.prompty") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_front_matter_params_inputs_and_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ENDPOINT", "https://example.invalid")
    monkeypatch.setenv("TEST_SECRET_KEY", "sk-never-read")
    p = load_prompty(write(tmp_path, PROMPTY))
    assert (p.name, p.description) == ("Ask", "One-line answers")
    config = p.model["configuration"]
    assert config["azure_endpoint"] == "https://example.invalid"
    assert config["api_key"] == {"env": "TEST_SECRET_KEY"}  # the key's name, never its value
    assert "sk-never-read" not in repr(p.front_matter)
    params = p.gen_params()
    assert (params.max_tokens, params.temperature, params.stop) == (24, 0.2, ("\n\n",))
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    messages = p.render(dict(p.sample, history=history))
    assert [(m.role, m.content) for m in messages] == [
        ("system", "You answer briefly."),
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "What is aspirin used for?"),
    ]


def test_missing_input_and_template_errors_name_the_file_line(tmp_path: Path) -> None:
    p = load_prompty(write(tmp_path, PROMPTY))
    with pytest.raises(TemplateError, match=r"ask\.prompty: data line 3: input 'question' is missing"):
        p.render({}, where="data line 3")
    bad_jinja = PROMPTY.replace("{{ question }}", "{{ question }")
    with pytest.raises(TemplateError, match=r"bad\.prompty:34: "):
        load_prompty(write(tmp_path, bad_jinja, "bad.prompty"))
    undefined = PROMPTY.replace("{{ question }}", "{{ nowhere }}")
    with pytest.raises(TemplateError, match=r"undef\.prompty:34: 'nowhere' is undefined"):
        load_prompty(write(tmp_path, undefined, "undef.prompty")).render({"question": "q"})


def test_bad_front_matter(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"yaml\.prompty:4: front matter is not valid YAML"):
        load_prompty(write(tmp_path, "---\nname: x\nmodel:\n  api: [chat\n---\nuser:\nhi\n", "yaml.prompty"))
    with pytest.raises(TemplateError, match=r"late\.prompty:6: front matter is not valid YAML"):  # after blank lines
        load_prompty(write(tmp_path, "\n  \n---\nname: x\nmodel:\n  api: [chat\n---\nuser:\nhi\n", "late.prompty"))
    with pytest.raises(TemplateError, match="expected YAML front matter"):
        load_prompty(write(tmp_path, "user:\nhi\n", "none.prompty"))
    with pytest.raises(TemplateError, match="no such prompt file"):
        load_prompty(tmp_path / "missing.prompty")


def test_blank_lines_may_come_before_the_front_matter(tmp_path: Path) -> None:
    prompty = load_prompty(write(tmp_path, "\n\n---\nname: late\n---\nuser:\nhi {{ x }}\n", "late.prompty"))
    assert prompty.name == "late" and prompty.render({"x": "there"})[0].content == "hi there"


def test_sample_from_a_json_file(tmp_path: Path) -> None:
    (tmp_path / "sample.json").write_text(json.dumps({"question": "from file"}))
    p = load_prompty(
        write(tmp_path, PROMPTY.replace("sample:\n  question: What is aspirin used for?", "sample: sample.json"))
    )
    assert p.render(p.sample)[-1].content == "from file"
