from __future__ import annotations

from pathlib import Path

import pytest

from llmcorr.correct.corrector import builtin_template
from llmcorr.errors import TemplateError
from llmcorr.prompts import load_template, parse_messages


def test_builtin_classification_template_renders_knowledge_turns() -> None:
    template = load_template(builtin_template("classification"))
    row = {"input": "r=1", "prediction": 0.8, "predicted": "True"}
    messages = template.render(task="is benign", knowledge=[dict(row, answer="False")] * 2, query=row)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2].content == "Prediction: False"
    assert "probability 0.800 that the sample is benign" in messages[-1].content
    assert "Prediction: <True or False>; Explanation: <text>" in messages[-1].content


def test_builtin_regression_template() -> None:
    template = load_template(builtin_template("regression"))
    row = {"input": "age=50", "prediction": 120.0, "prediction_text": "120"}
    messages = template.render(task="progression", knowledge=[], query=row)
    assert [m.role for m in messages] == ["system", "user"]
    assert "The model predicts 120." in messages[-1].content


def test_role_markers() -> None:
    messages = parse_messages("system:\nBe brief.\n\nuser:\n  Hi\nassistant:\nHello\n")
    assert [(m.role, m.content) for m in messages] == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello")]
    with pytest.raises(TemplateError, match="before the first role marker"):
        parse_messages("hello\nuser:\nhi")
    with pytest.raises(TemplateError, match="no messages"):
        parse_messages("   \n")


def test_errors_point_at_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jinja"
    bad.write_text("system:\nok\nuser:\n{% for x in %}\n")
    with pytest.raises(TemplateError, match=r"bad\.jinja:4: "):
        load_template(bad)
    undefined = tmp_path / "undef.jinja"
    undefined.write_text("system:\nfine\nuser:\n{{ nope }}\n")
    with pytest.raises(TemplateError, match=r"undef\.jinja:4: 'nope' is undefined"):
        load_template(undefined).render()
    with pytest.raises(TemplateError, match="no such template"):
        load_template(tmp_path / "missing.jinja")


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    evil = tmp_path / "evil.jinja"
    evil.write_text("user:\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(TemplateError):
        load_template(evil).render()
