"""The dashboard (`llmcorr ui`) in a real headless Chromium, over a real store of runs made against the quota server on
127.0.0.1: the runs table, a run and its rows, a row's trace, a running run moving on the page without a reload,
cancel, the prompt preview as it is typed, starting a run, rename/tag/archive/delete, compare, and token auth.
Screenshots go to test-artifacts/ at the repository root."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.cli.ui import bind
from llmcorr.config import Config
from llmcorr.errors import NotFoundError
from llmcorr.store import Store
from llmcorr.ui import create_app

from .conftest import run_cli, start_cli, wait_for_rows

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{fast}"
model = "m"
rpm = 6000
price_in = 0.15
price_out = 0.6

[[endpoints]]
name = "slow"
kind = "openai"
base_url = "{slow}"
model = "m"
rpm = 120
"""
PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 4
inputs:
  word:
    type: string
sample:
  word: enzyme
---
system:
You define words.

user:
Define {{ word }}.
"""


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a free 127.0.0.1 port, in a thread, as `llmcorr ui` serves it."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Lab:
    dir: Path
    home: Path
    config: Config
    url: str
    slow: QuotaServer

    @property
    def env(self) -> dict[str, str]:
        return {"LLMCORR_HOME": str(self.home)}

    def store(self) -> Store:
        return Store(self.config.store_path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, cancer_table: pd.DataFrame) -> Iterator[Lab]:
    """Two finished runs (a prompt run `defs`, a correct run `cancer`) in a store, and the dashboard over it."""
    root = tmp_path_factory.mktemp("dashboard")
    home = root / "home"
    fast_cfg = QuotaServerConfig(rpm=6000, tpm=10_000_000, base_latency_s=0.02)
    with QuotaServer(fast_cfg) as fast, QuotaServer(QuotaServerConfig(rpm=120, tpm=10_000_000)) as slow:
        (root / "llmcorr.toml").write_text(TOML.format(fast=fast.base_url, slow=slow.base_url))
        (root / "define.prompty").write_text(PROMPTY)
        words = pd.DataFrame({"word": [f"w{i}" for i in range(40)]})
        words.to_json(root / "words.jsonl", orient="records", lines=True)
        words.head(12).to_json(root / "words12.jsonl", orient="records", lines=True)
        cancer_table.to_csv(root / "preds.csv", index=False)
        toml = root / "llmcorr.toml"
        env = {"LLMCORR_HOME": str(home)}
        made = [
            run_cli("run", root / "define.prompty", "-d", root / "words12.jsonl", "--config", toml, "--name", "defs",
                    "-q", env=env),
            run_cli("correct", "-p", root / "preds.csv", "--limit", "6", "--gate-rows", "6", "--config", toml,
                    "--name", "cancer", "-q", env=env),
        ]  # fmt: skip
        for r in made:
            assert r.returncode == 0, r.stderr
        config = Config.load(toml, home=home)
        with serve(create_app(config)) as url:
            yield Lab(root, home, config, url, slow)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_runs_table_lists_runs_and_a_run_shows_metrics_and_filtered_rows(lab: Lab, page: Page) -> None:
    page.goto(lab.url + "/")
    table = page.locator("#runs-table")
    defs = table.locator("tr", has=page.get_by_role("link", name="defs", exact=True))
    cancer = table.locator("tr", has=page.get_by_role("link", name="cancer", exact=True))
    expect(defs).to_contain_text("prompt")
    expect(defs).to_contain_text("completed")
    expect(defs.locator("[data-field=progress]")).to_have_text("12/12")
    expect(cancer.locator("[data-field=progress]")).to_have_text(
        "12/12"
    )  # 6 test rows + 6 validation rows for the gate
    with lab.store() as store:
        record = store.get_run("cancer")
    expect(cancer.locator("[data-field=tokens]")).to_have_text(f"{record.input_tokens + record.output_tokens:,}")
    shot(page, "runs")

    page.get_by_role("link", name="cancer", exact=True).click()
    expect(page.locator("#run-label")).to_have_text("cancer")
    metrics = page.locator("#metrics")
    accuracy = record.metrics["base"]["accuracy"], record.metrics["corrected"]["accuracy"]
    accuracy_row = metrics.locator("tr").filter(has=page.get_by_role("cell", name="accuracy", exact=True))
    expect(accuracy_row).to_contain_text(f"{accuracy[0]:.4f}")
    expect(accuracy_row).to_contain_text(f"{accuracy[1]:.4f}")
    expect(metrics).to_contain_text("gate (chosen on validation)")
    with page.expect_navigation():
        page.locator("#report-link").click()
    expect(page.locator("#gate")).to_contain_text("chosen on 6 validation rows")
    expect(page.locator("svg[data-chart=calibration]")).to_have_count(1)
    shot(page, "report")
    page.go_back()
    changed = record.metrics["flips"]["changed"]
    expect(metrics.locator("tr", has_text="flips: changed")).to_contain_text(str(changed))
    expect(page.locator("#rows-table tr[data-row]")).to_have_count(12)
    shot(page, "run")
    page.get_by_role("link", name="validation rows (for the gate)").click()
    expect(page.locator("#rows-table tr[data-row]")).to_have_count(6)
    expect(page.locator("#rows-table")).to_contain_text("(validation, for the gate)")

    page.get_by_role("link", name="changed predictions only").click()
    expect(page.locator("#rows-table tr[data-row]")).to_have_count(changed)
    assert all("changed" in (c or "") for c in page.locator("#rows-table tr[data-row]").evaluate_all(
        "rows => rows.map(r => r.className)"))  # fmt: skip
    page.get_by_role("link", name="errors only").click()
    expect(page.locator("#rows-table tr[data-row]")).to_have_count(0)
    expect(page.locator("#rows-table")).to_contain_text("no row matches")

    page.goto(lab.url + "/?name=def")  # filter by part of a name
    expect(table.locator("tr[data-run-id]")).to_have_count(1)
    expect(table).to_contain_text("defs")
    page.goto(lab.url + "/?status=failed")
    expect(table).to_contain_text("no runs match these filters")
    page.goto(lab.url + "/?status=bogus")
    expect(page.locator("#error-message")).to_have_text(re.compile(r"^--status: expected one of running, "))


def test_a_rows_trace_shows_the_exact_prompt_and_response(lab: Lab, page: Page) -> None:
    with lab.store() as store:
        run = store.get_run("defs")
        row = store.rows(run.id)[2]
    page.goto(f"{lab.url}/runs/defs")
    page.locator("#rows-table").get_by_role("link", name="3", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/runs/{run.id}/rows/3$"))
    trace = page.locator("#trace")
    expect(trace.locator("li[data-kind=row] .span-name")).to_have_text("row 3")
    call = trace.locator("li[data-kind=llm]")
    expect(call.locator(".span-name")).to_have_text("chat m")
    prompts = call.locator(".prompt-text")
    expect(prompts).to_have_text([m["content"] for m in row.prompt])
    assert row.prompt[-1]["content"] == "Define w2."
    expect(call.locator(".response-text")).to_have_text(row.response)
    meta = call.locator("dl.meta")
    expect(meta.locator('dt:text-is("endpoint") + dd')).to_have_text("q")
    expect(meta.locator('dt:text-is("cache hit") + dd')).to_have_text("no")
    expect(meta.locator('dt:text-is("attempts") + dd')).to_have_text(str(row.attempts))
    expect(call.locator("summary")).to_contain_text(f"{row.input_tokens} in / {row.output_tokens} out tokens")
    bar = call.locator(".span-bar").get_attribute("style") or ""
    assert re.search(r"width: [0-9.]+%", bar), bar  # its duration, on the row's timeline
    shot(page, "row-trace")
    page.get_by_role("link", name="row 4 →").click()
    expect(page.locator("#trace li[data-kind=llm] .prompt-text").last).to_have_text("Define w3.")


def test_a_running_run_moves_on_the_page_without_a_reload_and_can_be_cancelled(
    lab: Lab, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCORR_HOME", str(lab.home))
    args = ("run", lab.dir / "define.prompty", "-d", lab.dir / "words.jsonl", "-e", "slow", "--no-cache", "-q")
    proc = start_cli(*args, "--config", lab.dir / "llmcorr.toml", "--name", "slow")  # 2 rows a second
    try:
        wait_for_rows(lab.home, "slow", 1, proc, timeout=60)
        page.goto(lab.url + "/")
        page.evaluate("window.sameDocument = true")
        progress = page.locator("#runs-table tr", has=page.get_by_role("link", name="slow", exact=True)).locator(
            "[data-field=progress]"
        )
        first = progress.inner_text()
        expect(progress).not_to_have_text(first, timeout=15_000)  # moved on by itself
        assert page.evaluate("window.sameDocument === true")  # no reload
        shot(page, "runs-live")

        page.get_by_role("link", name="slow", exact=True).click()
        page.evaluate("window.sameDocument = true")
        rows = page.locator("#rows-table tr[data-row]")
        shown = rows.count()
        page.wait_for_function(
            "n => document.querySelectorAll('#rows-table tr[data-row]').length > n", arg=shown, timeout=15_000
        )
        assert page.evaluate("window.sameDocument === true")
        shot(page, "run-live")

        page.get_by_role("button", name="Cancel run").click()
        expect(page.locator(".flash.ok")).to_contain_text("asked the run to stop")
        expect(page.locator("#run-live .summary .status").first).to_have_text("cancelled", timeout=20_000)
        expect(page.get_by_role("button", name="Cancel run")).to_be_hidden()
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    with lab.store() as store:
        record = store.get_run("slow")
    assert record.status == "cancelled" and 0 < record.rows_done < 40


def test_preview_renders_messages_and_token_count_as_inputs_are_typed(lab: Lab, page: Page) -> None:
    page.goto(lab.url + "/preview")
    page.locator("#preview-path").fill(str(lab.dir / "define.prompty"))
    messages = page.locator("#preview-messages .prompt-text")
    expect(messages).to_have_text(["You define words.", "Define enzyme."])  # the file's sample
    expect(page.locator("#preview-inputs")).to_have_value(re.compile(r'"word": "enzyme"'))
    tokens = page.locator("#preview-tokens")
    before = int(tokens.get_attribute("data-tokens") or 0)
    assert before > 0
    expect(tokens).to_contain_text("nothing was sent")

    page.locator("#preview-inputs").fill(json.dumps({"word": "a much longer phrase with many more tokens in it"}))
    expect(messages.last).to_have_text("Define a much longer phrase with many more tokens in it.")
    expect(tokens).not_to_have_attribute("data-tokens", str(before))
    assert int(tokens.get_attribute("data-tokens") or 0) > before
    shot(page, "preview")

    page.locator("#preview-inputs").fill('{"word": ')
    expect(page.locator("#preview-error")).to_contain_text("inputs: not valid JSON")
    page.locator("#preview-path").fill("")
    page.locator("#preview-inputs").fill('{"word": "x"}')
    page.locator("#preview-template").fill("system:\nBe brief.\nuser:\n{{ word | nosuchfilter }}")
    expect(page.locator("#preview-error")).to_contain_text("pasted.prompty:4")  # file:line, inline, no 500
    page.locator("#preview-template").fill("user:\nSay {{ word }} twice.")
    expect(messages).to_have_text(["Say x twice."])


def test_start_rename_tag_archive_and_delete_a_run_from_its_page(lab: Lab, page: Page) -> None:
    page.goto(lab.url + "/new")
    page.get_by_label("prompt file").fill(str(lab.dir / "define.prompty"))
    page.get_by_label("data file").fill(str(lab.dir / "words12.jsonl"))
    page.get_by_label("name (optional)").fill("scratch")
    page.get_by_label("only the first rows (optional)").fill("5")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-label")).to_have_text("scratch")
    expect(page.locator("#run-live .summary .status").first).to_have_text("completed", timeout=30_000)
    expect(page.locator("#rows-table tr[data-row]")).to_have_count(5)
    with lab.store() as store:
        run_id = store.get_run("scratch").id

    page.get_by_label("new name").fill("defs")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator(".flash.bad")).to_have_text("a run named 'defs' already exists; choose another name")
    page.get_by_label("new name").fill("renamed")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#run-label")).to_have_text("renamed")
    page.get_by_label("tags to add").fill("keep, draft")
    page.get_by_role("button", name="Add tags").click()
    expect(page.locator(".flash.ok")).to_have_text("tags: draft, keep")
    page.get_by_role("button", name="remove tag draft").click()
    page.get_by_role("button", name="Archive").click()
    expect(page.get_by_role("button", name="Restore")).to_be_visible()
    with lab.store() as store:
        record = store.get_run(run_id)
    assert (record.name, record.tags, record.archived) == ("renamed", ["keep"], True)

    page.goto(lab.url + "/")
    expect(page.get_by_role("link", name="renamed", exact=True)).to_have_count(0)  # archived runs are hidden
    page.get_by_label("show archived").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name="renamed", exact=True)).to_be_visible()

    page.get_by_role("link", name="renamed", exact=True).click()
    page.get_by_role("link", name="Delete…").click()
    expect(page.locator("h1")).to_have_text("Delete run renamed?")
    shot(page, "delete-confirm")
    page.get_by_role("button", name="Delete renamed").click()
    expect(page.locator(".flash.ok")).to_have_text("deleted run renamed")
    with lab.store() as store, pytest.raises(NotFoundError):
        store.get_run(run_id)
    page.goto(f"{lab.url}/runs/{run_id}")
    expect(page.locator("#error-message")).to_contain_text(f"no run with id or name '{run_id}'")
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator(".flash")).to_have_count(1)  # the one line, once


def test_new_run_errors_are_one_line_on_the_form(lab: Lab, page: Page) -> None:
    page.goto(lab.url + "/new")
    page.get_by_label("prompt file").fill(str(lab.dir / "define.prompty"))
    page.get_by_label("data file").fill(str(lab.dir / "words12.jsonl"))
    page.get_by_label("name (optional)").fill("defs")  # taken: the run's own one-line error comes back
    page.get_by_role("button", name="Start run").click()
    expect(page.locator(".flash.bad")).to_have_text("the run did not start: a run named 'defs' already exists; "
                                                    "choose another --name")  # fmt: skip
    expect(page.get_by_label("data file")).to_have_value(str(lab.dir / "words12.jsonl"))  # the form keeps its values


def test_compare_shows_metrics_side_by_side_and_plots(lab: Lab, page: Page) -> None:
    page.goto(lab.url + "/")
    for name in ("defs", "cancer"):
        page.get_by_role("checkbox", name=f"compare {name}").check()
    page.get_by_role("button", name="Compare selected").click()
    table = page.locator("#compare-table")
    expect(table.locator("thead th")).to_have_text(["", "cancer", "defs"])  # as the runs table lists them
    with lab.store() as store:
        cancer = store.get_run("cancer")
        spans = {r: store.spans(store.get_run(r).id) for r in ("defs", "cancer")}
    sent = {r: sum(s["kind"] == "llm" and not s["attributes"]["llmcorr.cache_hit"] for s in spans[r]) for r in spans}
    corrected = page.locator('svg[data-chart="metric-accuracy"] rect[data-series="corrected"]')
    expect(corrected).to_have_attribute("data-run", "cancer")
    value = float(corrected.get_attribute("data-value") or "nan")
    assert value == pytest.approx(cancer.metrics["corrected"]["accuracy"], abs=1e-5)
    for name, n in sent.items():
        line = page.locator(f'svg[data-chart="requests"] polyline[data-run="{name}"]')
        expect(line).to_have_attribute("data-requests", str(n))
    shot(page, "compare")


def test_a_token_guards_every_request(lab: Lab, browser: Browser) -> None:
    with serve(create_app(lab.config, token="s3cret-token")) as url:
        assert httpx.get(url + "/").status_code == 401
        assert httpx.get(url + "/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "/static/app.js").status_code == 401
        good = httpx.get(url + "/api/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert good.status_code == 200 and {r["name"] for r in good.json()["runs"]} >= {"defs", "cancer"}
        once = httpx.get(url + "/runs/defs?token=s3cret-token")
        assert once.status_code == 303 and once.headers["location"].endswith("/runs/defs")
        cookie = once.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        restore = httpx.post(url + "/runs/defs/archive", data={"archived": "0"}, cookies=once.cookies)
        assert restore.status_code == 303 and "message=restored" in restore.headers["location"]  # the cookie suffices…
        foreign = httpx.post(
            url + "/runs/defs/rename", data={"name": "y"}, cookies=once.cookies, headers={"Origin": "http://evil.test"}
        )
        assert foreign.status_code == 403  # …but not from another site's page

        context = browser.new_context()
        page = context.new_page()
        assert page.goto(url + "/").status == 401
        expect(page.locator("body")).to_contain_text("needs its token")
        page.goto(url + "/?token=s3cret-token")
        expect(page).to_have_url(url + "/")  # the token leaves the address bar…
        expect(page.get_by_role("link", name="defs", exact=True)).to_be_visible()
        page.goto(url + "/runs/cancer")  # …and the cookie carries on
        expect(page.locator("#run-label")).to_have_text("cancer")
        context.close()
    with lab.store() as store:
        assert store.get_run("defs").name == "defs"


def test_without_a_token_only_localhost_addresses_are_answered(lab: Lab) -> None:
    assert httpx.get(lab.url + "/", headers={"Host": "rebound.example:80"}).status_code == 400
    assert httpx.get(lab.url + "/api/runs/nope").json() == {
        "error": "no run with id or name 'nope' (see `llmcorr runs list`)"
    }


def _read_line(proc: subprocess.Popen, pattern: str, timeout: float = 30) -> re.Match[str]:
    stdout = proc.stdout
    seen = ""
    while select.select([stdout], [], [], timeout)[0]:
        line = stdout.readline()
        if not line:
            break
        seen += line
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} in: {seen!r}")


def test_ui_command_on_all_interfaces_generates_a_token(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCORR_HOME", str(lab.home))
    proc = start_cli("ui", "--host", "0.0.0.0", "--port", "0", "--config", lab.dir / "llmcorr.toml")
    try:
        match = _read_line(proc, r"http://\S+:(\d+)/\?token=([\w-]+)")
        port, token = match.group(1), match.group(2)
        assert len(token) >= 32
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/").status_code == 401
        opened = httpx.get(f"{url}/?token={token}", follow_redirects=True)
        assert opened.status_code == 200 and "defs" in opened.text

        busy = run_cli("ui", "--port", port)  # the port is taken: one line, exit 2
        assert busy.returncode == 2 and busy.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
        assert len(busy.stderr.strip().splitlines()) == 1
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode is not None


def test_a_multiclass_run_shows_both_confusion_matrices_and_its_report(lab: Lab, page: Page) -> None:
    """Iris corrected through a scripted server that always answers virginica: the run's page shows accuracy and
    macro-F1, the confusion matrices before and after (the cells the correction changed marked), and its report."""
    from llmcorr.correct.datasets import demo_predictions
    from tests.servers import ScriptedServer, ok

    demo_predictions("iris").to_csv(lab.dir / "iris.csv", index=False)
    with ScriptedServer(default=ok("Prediction: Virginica; Explanation: scripted")) as srv:
        made = run_cli("correct", "-p", lab.dir / "iris.csv", "--base-url", srv.base_url, "--model", "m",
                       "--limit", "9", "--no-gate", "--name", "iris", "-q", env=lab.env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    with lab.store() as store:
        metrics = store.get_run("iris").metrics
    assert metrics is not None and metrics["corrected"]["accuracy"] < metrics["base"]["accuracy"]
    page.goto(lab.url + "/runs/iris")
    rows = page.locator("#metrics tr")
    expect(rows.filter(has=page.get_by_role("cell", name="macro-F1", exact=True))).to_contain_text(
        f"{metrics['base']['macro_f1']:.4f}"
    )
    expect(rows.filter(has_text="recall: virginica")).to_contain_text("1.000")
    for side in ("base", "corrected"):
        table = page.locator(f"#confusion-{side}")
        expect(table.locator("thead th")).to_have_text(["", "setosa", "versicolor", "virginica"])
        expect(table.locator("tbody td")).to_have_text([str(n) for line in metrics["confusion"][side] for n in line])
    corrected_cells = page.locator("#confusion-corrected tbody tr").nth(0).locator("td")
    expect(corrected_cells.nth(2)).to_have_class(re.compile(r"\bchanged\b"))  # setosa rows now said virginica
    shot(page, "run-multiclass")
    with page.expect_navigation():
        page.locator("#report-link").click()
    expect(page.locator("#confusion-base td")).to_have_count(9)
    expect(page.locator("#confusion-corrected")).to_contain_text("predicted virginica")
    shot(page, "report-multiclass")
