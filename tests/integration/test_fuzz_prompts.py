"""Broken and hostile prompt files through `llmcorr run P --data D` and `llmcorr prompt preview P`.

Front matter that is not YAML or holds the wrong types, Jinja that does not parse, undefined names, runtime errors
(1/0, range(10**9), a macro that calls itself), nesting deeper than the parsers go, and template-injection attempts
(`''.__class__.__mro__`, `cycler.__init__.__globals__`, `[].__class__.__base__.__subclasses__()`, includes of files
outside the prompt's folder…): each is refused — exit code 2, one line naming the prompt file (and file:line where
the template has one), before a request is sent — and never rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.servers import ScriptedServer

from .fuzz import Fuzz, Outcome, fuzz_settings, ran, ran_or_refused, refused

FRONT = """---
name: Fuzz
model:
  api: chat
  parameters:
    max_tokens: 8
    temperature: 0
inputs:
  question:
    type: string
sample:
  question: What is aspirin?
---
"""
BODY = ["system:", "You answer briefly.", "", "user:", "{{ question }}"]
FIRST_BODY_LINE = FRONT.count("\n") + 1  # the file line of BODY[0]
DATA = "question\nWhat is aspirin?\nWhat is a base?\n"

# Lines that must never render: (the line, a word its error holds)
HOSTILE = [
    ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ("{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}", "unsafe"),
    ("{{ cycler.__init__.__globals__ }}", "unsafe"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "unsafe"),
    ("{{ joiner.__init__.__globals__ }}", "unsafe"),
    ("{{ namespace.__init__.__globals__ }}", "unsafe"),
    ("{{ lipsum.__globals__['os'].system('true') }}", "unsafe"),
    ("{{ self._TemplateReference__context }}", "unsafe"),
    ("{{ question.__class__.__base__ }}", "unsafe"),
    ("{{ range.__self__ }}", "__self__"),
    ("{{ (1).__add__(1) }}", "unsafe"),
    ("{{ ''|attr('__class__') }}", "unsafe"),
    ("{{ '{0.__class__}'.format(question) }}", "unsafe"),
    ("{{ [].append(1) }}", "unsafe"),
    ("{{ {}.update(a=1) }}", "unsafe"),
    ("{{ config.items() }}", "'config' is undefined"),
    ("{{ request.application.__globals__ }}", "'request' is undefined"),
    ("{% include '/etc/passwd' %}", "/etc/passwd"),
    ("{% include '../../../../../../etc/passwd' %}", "etc/passwd"),
    ("{% import 'os' as os %}{{ os }}", "os"),
    ("{% extends '/etc/hostname' %}", "/etc/hostname"),
    ("{% include 'bin.dat' %}", "UnicodeDecodeError"),
    ("{{ range(10**9)|list }}", "OverflowError"),
    ("{{ 1/0 }}", "ZeroDivisionError"),
    ("{{ 'a' + 1 }}", "TypeError"),
    ("{{ '%d'|format('x') }}", "TypeError"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "RecursionError"),
]
SYNTAX = [
    "{{",
    "{{ question }",
    "{% if %}",
    "{% for x in %}",
    "{% endfor %}",
    "{{ question | }}",
    "{# unclosed",
    "{% block %}",
    "{{ 'unterminated }}",
    "{% set %}",
    "{% raw %}",
    "{{ question..x }}",
    "{% macro %}",
    "{% if question %}",
    "{{ question.__class__ = 1 }}",
]
# (YAML that replaces `old` in FRONT, the words its error holds)
WRONG_TYPES = [
    *((f"    max_tokens: {v}", "max_tokens") for v in ("lots", "-1", "0", "true", "[1]", "{a: 1}", "null", "1.5")),
    ("    max_tokens: '${env:LLMCORR_FUZZ_UNSET}'", "max_tokens"),
    ("    max_tokens: 1" + "0" * 5000, "ValueError"),
    *((f"    temperature: {v}", "temperature") for v in ("hot", "-0.5", ".nan", ".inf", "[0]", "true", "null")),
    *((f"    temperature: 0\n    seed: {v}", "seed") for v in ("x", "1.5", "[1]")),
    *((f"    temperature: 0\n    stop: {v}", "stop") for v in ("5", "[1, 2]", "{a: b}")),
    ("    temperature: 0\n    seed: 2024-13-45", "month"),
]
SYNTAX_AT = "You answer briefly."  # a syntax error goes on the line after it
BLOCKS = {  # (a block of FRONT, what replaces it, the words its error holds)
    "model": ("model:\n  api: chat\n  parameters:\n    max_tokens: 8\n    temperature: 0\n", ["gpt", "[1]", "5"]),
    "inputs": (
        "inputs:\n  question:\n    type: string\n",
        ["[question]", "question", "5", '{"a\\nb": {type: string}}'],
    ),
    "sample": (
        "sample:\n  question: What is aspirin?\n",
        ["5", "[1]", "true", "missing.json", '"a\\0b.json"', "bin.dat"],
    ),
    "parameters": ("  parameters:\n    max_tokens: 8\n    temperature: 0\n", ["[1]", "lots"]),
}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    with ScriptedServer() as server:
        yield Fuzz(server, tmp_path_factory.mktemp("fuzz-prompts"))


@dataclass(frozen=True)
class Prompt:
    family: str
    content: bytes
    line: int = 0  # the file line the break is on, where there is one
    needles: tuple[str, ...] = ()


def body_with(lines: list[str], at: int, line: str) -> tuple[str, int]:
    """BODY with `line` inserted before BODY[at]: the text and the file line it is on."""
    return "\n".join([*lines[:at], line, *lines[at:]]) + "\n", FIRST_BODY_LINE + at


FAMILIES = (
    "valid",
    "yaml_noise",
    "wrong_type",
    "wrong_block",
    "syntax",
    "undefined",
    "hostile",
    "random_body",
    "not_utf8",
    "no_front_matter",
    "deep_jinja",
    "deep_yaml",
    "alias_bomb",
)


@st.composite
def prompts(draw: st.DrawFn, family: str) -> Prompt:
    at = draw(st.integers(0, len(BODY)))
    front, body, line, needles = FRONT, "\n".join(BODY) + "\n", 0, ()
    if family == "yaml_noise":
        end = len(front) - len("---\n")
        pos = draw(st.integers(len("---\n"), end))
        noise = draw(st.text(alphabet=":[]{}\"'&*!|>%@`#,-? \t\nab1", min_size=1, max_size=6))
        front = front[:pos] + noise + front[pos:]
    elif family == "wrong_type":
        new, word = draw(st.sampled_from(WRONG_TYPES))
        old = "    temperature: 0" if "temperature" in new or "seed" in new or "stop" in new else "    max_tokens: 8"
        front, needles = front.replace(old, new), (word,)
    elif family == "wrong_block":
        key = draw(st.sampled_from(sorted(BLOCKS)))
        old, values = BLOCKS[key]
        indent = "  " if key == "parameters" else ""
        front, needles = (
            front.replace(old, f"{indent}{key}: {draw(st.sampled_from(values))}\n"),
            (key.removesuffix("s"),),
        )
    elif family == "syntax":
        body, line = body_with(BODY, at, draw(st.sampled_from(SYNTAX)))
    elif family == "undefined":
        name = "nope_" + draw(st.from_regex(r"[a-z0-9_]{0,10}", fullmatch=True))
        body, line = body_with(BODY, at, f"{{{{ {name} }}}}")
        needles = (f"'{name}' is undefined",)
    elif family == "hostile":
        text, word = draw(st.sampled_from(HOSTILE))
        body, line = body_with(BODY, at, text)
        needles = (word,)
    elif family == "random_body":
        body = draw(st.text(max_size=200))
    elif family == "deep_jinja":
        depth = draw(st.integers(100, 3000))
        nested = draw(
            st.sampled_from(
                ["{{ " + "(" * depth + "1" + ")" * depth + " }}", "{% if true %}" * depth + "x" + "{% endif %}" * depth]
            )
        )
        body, line = body_with(BODY, at, nested)
    elif family == "deep_yaml":
        depth = draw(st.integers(500, 1_000))  # PyYAML gives up near 500 (and takes ~1 s per 1,000)
        front = front.replace("name: Fuzz\n", "name: Fuzz\ndeep: " + "[" * depth + "]" * depth + "\n")
    elif family == "alias_bomb":  # nine levels of nine aliases: 9**9 strings if anything expands it
        levels = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
        front = front.replace("name: Fuzz\n", "name: Fuzz\nmetadata:\n  " + "\n  ".join(levels) + "\n")
    content = (front + body).encode()
    if family == "not_utf8":
        pos = draw(st.integers(0, len(content)))
        content = content[:pos] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"])) + content[pos:]
    elif family == "no_front_matter":
        content = draw(st.sampled_from([b"", body.encode(), b"---\n", b"---\nname: x\n"]))
    return Prompt(family, content, line, needles)


def expect(prompt: Prompt, command: str, outcome: Outcome) -> None:
    event(f"{prompt.family} via {command}: exit {outcome.code}")  # --hypothesis-show-statistics
    family = prompt.family
    if family in ("valid", "alias_bomb"):
        if command == "run":
            ran(outcome)
        else:
            assert outcome.code == 0 and "What is aspirin?" in outcome.stdout, outcome
    elif family in ("yaml_noise", "random_body", "deep_jinja"):  # shallow enough nesting renders
        ran_or_refused(outcome, "p.prompty")
    else:
        line = refused(outcome, "p.prompty", *prompt.needles)
        assert "<class" not in outcome.stdout + line and "<function" not in outcome.stdout + line
        if family == "syntax":
            assert re.search(r"p\.prompty:\d+: ", line), line
        if family in ("undefined", "hostile") and "undefined" in " ".join(prompt.needles):
            assert f"p.prompty:{prompt.line}: " in line, line
            if command == "run":
                assert line.endswith("(data.csv: row 1 (line 2))"), line  # the row it failed on


@pytest.mark.parametrize("family", FAMILIES)
@fuzz_settings(6)
@given(data=st.data())
def test_broken_and_hostile_prompt_files(fuzz: Fuzz, family: str, data: st.DataObject) -> None:
    prompt, command = data.draw(prompts(family)), data.draw(st.sampled_from(["run", "preview"]))
    with fuzz.workdir() as workdir:
        (workdir / "p.prompty").write_bytes(prompt.content)
        (workdir / "data.csv").write_text(DATA)
        (workdir / "bin.dat").write_bytes(b"\xff\xfe\x00binary")
        if command == "run":
            outcome = fuzz.call(workdir, "run", "p.prompty", "--data", "data.csv", "-q")
        else:
            outcome = fuzz.call(workdir, "prompt", "preview", "p.prompty")
    expect(prompt, command, outcome)


@pytest.mark.parametrize(("text", "word"), HOSTILE)
def test_every_hostile_line_is_refused_unrendered(fuzz: Fuzz, text: str, word: str) -> None:
    body, line = body_with(BODY, len(BODY), text)
    with fuzz.workdir() as workdir:
        (workdir / "p.prompty").write_text(FRONT + body)
        (workdir / "data.csv").write_text(DATA)
        (workdir / "bin.dat").write_bytes(b"\xff\xfe\x00binary")
        ran = fuzz.call(workdir, "run", "p.prompty", "--data", "data.csv", "-q")
        shown = fuzz.call(workdir, "prompt", "preview", "p.prompty")
    for outcome in (ran, shown):
        error = refused(outcome, f"p.prompty:{line}: ", word)
        assert "<class" not in outcome.stdout + error and "<function" not in outcome.stdout + error
    assert refused(ran).endswith("(data.csv: row 1 (line 2))")


@pytest.mark.parametrize(
    ("old", "new", "word"),
    [
        *((SYNTAX_AT, SYNTAX_AT + "\n" + text, "p.prompty:") for text in SYNTAX),
        *(
            ("    temperature: 0" if "max_tokens" not in new else "    max_tokens: 8", new, word)
            for new, word in WRONG_TYPES
        ),
        *(
            (
                old,
                f"{'  ' if key == 'parameters' else ''}{key}: {v}\n",
                key.removesuffix("s"),
            )  # inputs: "input 'x' is missing"
            for key, (old, vs) in BLOCKS.items()
            for v in vs
        ),
    ],
)
def test_every_listed_break_is_refused(fuzz: Fuzz, old: str, new: str, word: str) -> None:
    text = FRONT + "\n".join(BODY) + "\n"
    assert old in text
    with fuzz.workdir() as workdir:
        (workdir / "p.prompty").write_text(text.replace(old, new, 1))
        (workdir / "data.csv").write_text(DATA)
        (workdir / "bin.dat").write_bytes(b"\xff\xfe\x00binary")
        refused(fuzz.call(workdir, "run", "p.prompty", "--data", "data.csv", "-q"), "p.prompty", word)
        refused(fuzz.call(workdir, "prompt", "preview", "p.prompty"), "p.prompty", word)


def test_data_is_never_evaluated_as_a_template(fuzz: Fuzz) -> None:
    """Values that look like Jinja reach the model as the text they are."""
    hostile = "{{ ''.__class__.__mro__ }}{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}"
    with fuzz.workdir() as workdir:
        (workdir / "p.prompty").write_text(FRONT + "\n".join(BODY) + "\n")
        (workdir / "data.jsonl").write_text(json.dumps({"question": hostile}) + "\n")
        before = len(fuzz.server.requests)
        ran(fuzz.call(workdir, "run", "p.prompty", "--data", "data.jsonl", "-q"))
    sent = fuzz.server.requests[before]["body"]["messages"][-1]["content"]
    assert sent == hostile


def test_the_real_process_refuses_alike(fuzz: Fuzz) -> None:
    with fuzz.workdir() as workdir:
        (workdir / "p.prompty").write_text(FRONT + "user:\n{{ cycler.__init__.__globals__.os.popen('id').read() }}\n")
        (workdir / "data.csv").write_text(DATA)
        args = ["run", "p.prompty", "--data", "data.csv"]
        spawned, called = fuzz.spawn(workdir, *args), fuzz.call(workdir, *args)
    line = refused(spawned, "p.prompty", "unsafe")
    assert line == refused(called)
