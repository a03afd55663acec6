"""Broken `llmcorr.toml` through every kind of command that reads it: `llmcorr run`, `llmcorr correct`,
`llmcorr prompt preview` and `llmcorr runs list` (all find it in the working directory).

TOML that does not parse, unknown keys, wrong types, URLs a request cannot go to, negative, zero, NaN and infinite
quotas, a key written into the file, two endpoints of one name, a default that names none, a store that is not
PostgreSQL, bytes that are not UTF-8, nesting deeper than the parser goes: each is refused — exit code 2, one line
naming the file and the setting — before a run is recorded or a request sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from llmcorr.config import Config, EndpointConfig
from tests.servers import ScriptedServer

from .fuzz import ENDPOINT_TOML, Fuzz, Outcome, fuzz_settings, ran_or_refused, refused

PROMPTY = "---\nname: Ask\nmodel:\n  parameters:\n    max_tokens: 4\n---\nuser:\n{{ question }}\n"
QUESTIONS = "question\nWhat is aspirin?\n"
PREDICTIONS = (
    "id,input,prediction,label,split\n"
    "a,x1,0.9,1,train\nb,x2,0.2,0,valid\nc,x3,0.7,1,valid\nd,x4,0.4,0,test\ne,x5,0.8,1,test\n"
)
COMMANDS = {
    "run": ("run", "p.prompty", "--data", "q.csv", "-q"),
    "correct": ("correct", "-p", "preds.csv", "--shots", "1", "--limit", "1", "--no-gate", "--yes", "-q"),
    "preview": ("prompt", "preview", "p.prompty", "--inputs", '{"question": "hi"}'),
    "runs list": ("runs", "list"),
}
# (a setting as it appears in ENDPOINT_TOML or a new one, a bad value, the words the error holds)
BAD_VALUES = [
    *(("rpm", v, "rpm") for v in ('"fast"', "[1]", "{a = 1}", "-1", "0", "-0.5", "nan", "inf", "-inf")),
    *(("tpm", v, "tpm") for v in ('"lots"', "0", "-100", "nan", "inf")),
    *(("max_concurrency", v, "max_concurrency") for v in ("1.5", '"x"', "0", "-3", "5000")),
    *(("price_in", v, "price_in") for v in ('"cheap"', "-0.01", "nan", "inf")),
    *(("price_out", v, "price_out") for v in ("-1", "inf")),
    *(("timeout_s", v, "timeout_s") for v in ("0", "-1", "nan", "inf", '"soon"')),
    *(("window_s", v, "window_s") for v in ("0", "-2", "inf")),
    *(("kind", v, "kind") for v in ('"magic"', "5", '""')),
    *(("name", v, "name") for v in ("5", "[1]")),
    *(("model", v, "model") for v in ("5", "[]")),
    *(
        ("base_url", v, "base_url")
        for v in (
            '"not a url"',
            '"ftp://127.0.0.1/v1"',
            '"http://"',
            '"127.0.0.1:8000/v1"',
            '"http://[::1/v1"',
            '""',
            '"http://h ost/v1"',
            '"http://127.0.0.1:99999/v1"',
            '"http://127.0.0.1:port/v1"',
            '"file:///etc/passwd"',
            '"javascript:alert(1)"',
            "5",
        )
    ),
    ("api_key", '"sk-live-FUZZSECRET"', "api_key"),
    ("api_version", "[1]", "api_version"),
    ('"a\\nb"', "1", "not an endpoint setting"),  # a quoted key holding a newline: still one line
]
TOP_LEVEL = [
    ("default", "5", "default"),
    ("default", '["nowhere"]', "nowhere"),
    ("tracing", "[1]", "tracing"),
    ("otlp", "5", "otlp"),
    ("otlp", '"nonsense"', "otlp"),
    ("otlp", '"ftp://127.0.0.1:4318"', "otlp"),
    ("store_url", '"sqlite:///x.db"', "store_url"),
    ("home", "5", "home"),
]
KNOWN = {*Config.model_fields, *EndpointConfig.model_fields, "api_key"}
URL = "@@URL@@"  # the counting server's, filled in by the test


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    with ScriptedServer() as server:
        yield Fuzz(server, tmp_path_factory.mktemp("fuzz-config"))


@dataclass(frozen=True)
class Toml:
    family: str
    content: bytes
    needles: tuple[str, ...] = ()
    secret: str = ""  # what the error line must not repeat


def set_value(toml: str, key: str, value: str, top: bool = False) -> str:
    """`toml` with `key = value` at the top level or in the endpoint (replacing the key's line where there is one)."""
    lines = toml.splitlines()
    start = 0 if top else lines.index("[[endpoints]]") + 1
    end = lines.index("[[endpoints]]") if top else len(lines)
    for i in range(start, end):
        if lines[i].split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
            break
    else:
        lines.insert(start, f"{key} = {value}")
    return "\n".join(lines) + "\n"


FAMILIES = ("valid", "syntax", "unknown_key", "bad_value", "top_level", "duplicate", "not_utf8", "deep", "big_int")


@st.composite
def tomls(draw: st.DrawFn, family: str) -> Toml:
    toml, needles, secret = ENDPOINT_TOML.format(url=URL), (), ""
    if family == "syntax":
        pos = draw(st.integers(0, len(toml)))
        toml = toml[:pos] + draw(st.text(alphabet="[]=\"'{}#.,\n= ab1", min_size=1, max_size=5)) + toml[pos:]
    elif family == "unknown_key":
        # a key no endpoint takes is checked against the kind's own options (providers/registry.py)
        unknown = {True: "Extra inputs are not permitted", False: "not an endpoint setting, nor an option of kind"}
        key = draw(st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True).filter(lambda k: k not in KNOWN))
        top = draw(st.booleans())
        toml, needles = set_value(toml, key, "1", top), (key, unknown[top])
        if draw(st.booleans()):  # a quoted key: any text, newlines too
            key = json.dumps(
                draw(st.text(st.characters(exclude_characters="\x7f"), min_size=1, max_size=12)), ensure_ascii=False
            )
            toml, needles = set_value(toml, key, "1", top), (unknown[top],)  # beside the first: one kind of error
    elif family == "bad_value":
        key, value, word = draw(st.sampled_from(BAD_VALUES))
        toml, needles = set_value(toml, key, value), (word,)
        secret = "FUZZSECRET" if key == "api_key" else ""
    elif family == "top_level":
        key, value, word = draw(st.sampled_from(TOP_LEVEL))
        toml, needles = set_value(toml, key, value, top=True), (word,)
    elif family == "duplicate":
        toml, needles = toml + toml[toml.index("[[endpoints]]") :], ("two endpoints are named 'fuzz'",)
    elif family == "deep":
        depth = draw(st.integers(2_000, 50_000))
        toml, needles = "deep = " + "[" * depth + "]" * depth + "\n" + toml, ("not valid TOML",)
    elif family == "big_int":
        toml, needles = set_value(toml, "rpm", "1" + "0" * draw(st.integers(5_000, 20_000))), ("not valid TOML",)
    content = toml.encode()
    if family == "not_utf8":
        pos = draw(st.integers(0, len(content)))
        content = content[:pos] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"])) + content[pos:]
    return Toml(family, content, needles, secret)


def expect(toml: Toml, command: str, outcome: Outcome) -> None:
    event(f"{toml.family} via {command}: exit {outcome.code}")  # --hypothesis-show-statistics
    if toml.family == "valid":
        assert outcome.code == 0 and "error" not in outcome.stderr, outcome
        assert outcome.requests == (1 if command in ("run", "correct") else 0), outcome
    elif toml.family == "syntax":  # may comment out `default`: then the embedded model, which is not there
        ran_or_refused(outcome)
    else:
        line = refused(outcome, "llmcorr.toml", *toml.needles)
        assert not toml.secret or toml.secret not in outcome.stderr + outcome.stdout, line


@pytest.mark.parametrize("family", FAMILIES)
@fuzz_settings(8)
@given(data=st.data())
def test_broken_config(fuzz: Fuzz, family: str, data: st.DataObject) -> None:
    toml, command = data.draw(tomls(family)), data.draw(st.sampled_from(sorted(COMMANDS)))
    with fuzz.workdir(toml.content.replace(URL.encode(), fuzz.server.base_url.encode())) as workdir:
        (workdir / "p.prompty").write_text(PROMPTY)
        (workdir / "q.csv").write_text(QUESTIONS)
        (workdir / "preds.csv").write_text(PREDICTIONS)
        outcome = fuzz.call(workdir, *COMMANDS[command])
    expect(toml, command, outcome)


@pytest.mark.parametrize(
    ("key", "value", "word", "top"), [*((*v, False) for v in BAD_VALUES), *((*v, True) for v in TOP_LEVEL)]
)
def test_every_listed_bad_setting_is_refused(fuzz: Fuzz, key: str, value: str, word: str, top: bool) -> None:
    toml = set_value(ENDPOINT_TOML.format(url=fuzz.server.base_url), key, value, top)
    with fuzz.workdir(toml) as workdir:
        (workdir / "p.prompty").write_text(PROMPTY)
        (workdir / "q.csv").write_text(QUESTIONS)
        (workdir / "preds.csv").write_text(PREDICTIONS)
        for command in COMMANDS.values():
            line = refused(fuzz.call(workdir, *command), "llmcorr.toml", word)
            assert "FUZZSECRET" not in line


def test_the_real_process_refuses_alike(fuzz: Fuzz) -> None:
    toml = ENDPOINT_TOML.format(url="http://127.0.0.1:port/v1")
    with fuzz.workdir(toml) as workdir:
        (workdir / "p.prompty").write_text(PROMPTY)
        (workdir / "q.csv").write_text(QUESTIONS)
        args = ["run", "p.prompty", "--data", "q.csv"]
        spawned, called = fuzz.spawn(workdir, *args), fuzz.call(workdir, *args)
    line = refused(spawned, "llmcorr.toml", "base_url")
    assert line == refused(called)
