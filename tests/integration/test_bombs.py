"""Absurd sampling parameters and template bombs (issue 13, item 8): refused with one line and exit code 2, before a
request is sent, in bounded time and memory — through `llmcorr run`, `llmcorr prompt preview` and the dashboard's
preview, which also stops a bomb whose client has left.

The CLI runs as its own process, under a 4 GB address-space limit and a timeout, so a bomb that is not stopped fails
the test instead of hanging it or eating the machine."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmcorr.errors import TemplateError
from llmcorr.prompts import render
from llmcorr.prompts.render import compile_template
from tests.conftest import LLMCORR
from tests.servers import ScriptedServer

from .conftest import start_cli
from .fuzz import ENDPOINT_TOML, NO_MODEL, Fuzz, Outcome, refused, runs
from .test_dashboard import _read_line

ABSURD = "99999999999999999999999"
FRONT = "---\nname: Bomb\nsample:\n  question: What?\nmodel:\n  api: chat\n  parameters:\n{parameters}\n---\n"
BODY_LINE = 11  # the file line of the template line under test (FRONT is 9 lines, then `user:`)
DATA = "question\nWhat is aspirin?\nWhat is a base?\n"
FLOW = 'import llmcorr\n\n\ndef define(question):\n    return {"definition": llmcorr.chat(f"Define {question}")}\n'
TIME = "rendering took over 2 s, the limit for one prompt"
SIZE = "renders over 1,000,000 characters, the limit for one prompt"
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}BODY{% endfor %}{% endfor %}"
# (a template line, what its one error line holds)
BOMBS = {
    "nested loops writing nothing": (NESTED.replace("BODY", ""), f"p.prompty:{BODY_LINE}: {TIME}"),
    "nested loops writing": (NESTED.replace("BODY", "x"), f"p.prompty: {SIZE}"),
    "a loop over a huge string": (
        "{% for c in question * 1000 %}{% for d in question * 1000 %}{% endfor %}{% endfor %}",
        f"p.prompty:{BODY_LINE}: {TIME}",
    ),
    "a macro calling itself twice": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        f"p.prompty:{BODY_LINE}: {TIME}",
    ),
    "a captured block": ("{% set s %}" + NESTED.replace("BODY", "x") + "{% endset %}{{ s }}", TIME),
    "a huge repetition": ("{{ 'x' * 10 ** 10 }}", "'*' would make 10,000,000,000 items, over 1,000,000"),
    "a huge power": ("{{ 10 ** 100000000 }}", "'**' would make a number of ~400,000,000 bits"),
}


def _address_space_limit() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def spawn(fuzz: Fuzz, workdir: Path, *args: object, timeout: float = 60) -> tuple[Outcome, float]:
    """`llmcorr ARGS` as its own process in `workdir`, bounded; the outcome and the seconds it took."""
    before = len(fuzz.server.requests)
    env = {**os.environ, "LLMCORR_HOME": str(workdir / "home"), "COLUMNS": "160", "LLMCORR_LOCAL_MODEL": NO_MODEL}
    start = time.monotonic()
    try:
        done = subprocess.run(
            [LLMCORR, *map(str, args)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            preexec_fn=_address_space_limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"llmcorr {' '.join(map(str, args))} still running after {timeout} s")
    outcome = Outcome(done.returncode, done.stdout, done.stderr, len(fuzz.server.requests) - before, runs(workdir))
    return outcome, time.monotonic() - start


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    with ScriptedServer() as server:
        yield Fuzz(server, tmp_path_factory.mktemp("bombs"))


def prompt_file(workdir: Path, parameters: str = "    max_tokens: 8", line: str = "") -> Path:
    (workdir / "data.csv").write_text(DATA, encoding="utf-8")
    path = workdir / "p.prompty"
    path.write_text(FRONT.format(parameters=parameters) + "user:\n{{ question }}" + line + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("parameters", "field", "expected"),
    [
        (f"    max_tokens: {ABSURD}", "max_tokens", f"a whole number from 1 to 1,000,000, got {ABSURD}"),
        ("    max_tokens: 8\n    temperature: 1000", "temperature", "a number from 0 to 2, got 1000"),
        (
            "    max_tokens: 8\n    seed: 1180591620717411303424",
            "seed",
            "a whole number that fits in 64 bits (signed), got 1180591620717411303424",
        ),
        ("    max_tokens: 8\n    top_p: 7", "top_p", "a number from 0 to 1, got 7"),
    ],
)
def test_an_absurd_parameter_in_a_prompt_file_is_refused_before_a_request(
    fuzz: Fuzz, parameters: str, field: str, expected: str
) -> None:
    with fuzz.workdir() as workdir:
        prompt_file(workdir, parameters)
        outcome, _ = spawn(fuzz, workdir, "run", "p.prompty", "--data", "data.csv")
        line = refused(outcome, f"p.prompty: model.parameters.{field}: expected {expected}")
        assert "ETA" not in outcome.stdout + line  # no estimate of a run that cannot start
        refused(fuzz.call(workdir, "prompt", "preview", "p.prompty"), f"model.parameters.{field}: expected {expected}")


def test_an_absurd_max_tokens_flag_is_refused_before_a_request(fuzz: Fuzz) -> None:
    with fuzz.workdir() as workdir:
        (workdir / "data.csv").write_text(DATA, encoding="utf-8")
        (workdir / "flow.py").write_text(FLOW, encoding="utf-8")
        outcome, _ = spawn(fuzz, workdir, "run", "flow.py:define", "--data", "data.csv", "--max-tokens", ABSURD)
        refused(outcome, f"max_tokens: expected a whole number from 1 to 1,000,000, got {ABSURD}")
        # the same flow with a sane flag runs: the refusal is the bound, not the flow
        outcome, _ = spawn(fuzz, workdir, "run", "flow.py:define", "--data", "data.csv", "--max-tokens", "1000000")
        assert outcome.code == 0 and outcome.requests == 2, outcome
        assert [r["body"]["max_tokens"] for r in fuzz.server.requests[-2:]] == [1_000_000, 1_000_000]


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_template_bomb_is_refused_in_bounded_time(fuzz: Fuzz, bomb: str) -> None:
    line, expected = BOMBS[bomb]
    with fuzz.workdir() as workdir:
        prompt_file(workdir, line=line)
        outcome, took = spawn(fuzz, workdir, "run", "p.prompty", "--data", "data.csv")
        error = refused(outcome, expected, "(data.csv: row 1 (line 2))")
        assert "MemoryError" not in error
        assert took < 30, took  # 2 s of rendering, the rest is starting Python under a loaded CI
        if TIME not in expected:  # (the preview renders as a run does; the dashboard's test shows it stopping in time)
            refused(fuzz.call(workdir, "prompt", "preview", "p.prompty"), expected)


def test_the_limits_are_configurable_and_spare_ordinary_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RENDER_TIME_LIMIT_S", 0.25)
    monkeypatch.setattr(render, "RENDER_SIZE_LIMIT", 2000)
    where = Path("t.prompty")
    ordinary = (
        "user:\n{% for w in words if w %}{{ loop.index }}.{{ w }}{% if not loop.last %} {% endif %}{% else %}-"
        "{% endfor %} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
        "{% for x in [[1, [2]], [3]] recursive %}{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}"
        "{% endfor %}"
    )
    shown = compile_template(ordinary, where).render(words=["a", "", "b"])
    assert [m.content for m in shown] == ["1.a 2.b ababab 1024123"]
    assert compile_template("user:\n{{ 'x' * 1990 }}", where).render()[0].content == "x" * 1990

    start = time.monotonic()
    with pytest.raises(TemplateError, match=r"^t\.prompty:2: rendering took over 0\.25 s, the limit for one prompt"):
        compile_template("user:\n" + NESTED.replace("BODY", ""), where).render()
    assert time.monotonic() - start < 2
    with pytest.raises(TemplateError, match=r"^t\.prompty: renders over 2,000 characters, the limit for one prompt$"):
        compile_template("user:\n{% for i in range(100) %}{{ 'y' * 30 }}{% endfor %}", where).render()
    with pytest.raises(TemplateError, match=r"^t\.prompty:2: '\*' would make 2,001 items, over 2,000$"):
        compile_template("user:\n{{ [1] * 2001 }}", where).render()


def cpu_seconds(pid: int) -> float:
    """The CPU time process `pid` has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_dashboard_preview_of_a_bomb_stops_when_its_client_has_left(fuzz: Fuzz, llmcorr_home: Path) -> None:
    with fuzz.workdir() as workdir:
        (workdir / "llmcorr.toml").write_text(ENDPOINT_TOML.format(url=fuzz.server.base_url), encoding="utf-8")
        proc = start_cli("ui", "--port", "0", "--config", workdir / "llmcorr.toml")
        requests = len(fuzz.server.requests)
        try:
            base = "http://127.0.0.1:" + _read_line(proc, r"llmcorr dashboard: http://127\.0\.0\.1:(\d+)/").group(1)
            bomb = {"template": "user:\n" + NESTED.replace("BODY", "")}
            sent = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):  # the client gives up and leaves
                httpx.post(base + "/api/preview", json=bomb, timeout=0.5)
            idle = False  # the render must stop within its limit (2 s) and some slack, although nobody waits for it
            while not idle and time.monotonic() < sent + 2 + 4:
                before = cpu_seconds(proc.pid)
                time.sleep(0.5)
                idle = cpu_seconds(proc.pid) - before < 0.15
            assert idle, "the dashboard still renders the bomb its client left"

            sent = time.monotonic()
            shown = httpx.post(base + "/api/preview", json=bomb, timeout=60).json()
            assert time.monotonic() - sent < 15
            assert shown["ok"] is False and shown["error"] == f"pasted.prompty:2: {TIME} (a loop too long?)"
            shown = httpx.post(base + "/api/preview", json={"template": "user:\n{{ 'x' * 10 ** 10 }}"}).json()
            assert shown["error"] == "pasted.prompty:2: '*' would make 10,000,000,000 items, over 1,000,000"
            assert len(fuzz.server.requests) == requests  # a preview sends nothing
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:  # a thread still rendering keeps it from exiting: never leave it behind
                proc.kill()
                proc.communicate()
