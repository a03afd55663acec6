"""Tracing against real servers on 127.0.0.1: the span tree of a flow run in the store (run → row → step → LLM call)
with GenAI attributes, retries and cache hits on the LLM spans, failing steps, --no-trace, and OTLP/HTTP export to a
real collector that decodes the protobuf."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import llmcorr
from bench.quota_server import QuotaServer, QuotaServerConfig

from .conftest import quota_toml, run_cli

FLOW = """
import llmcorr

@llmcorr.trace
def ask(word: str) -> str:
    return llmcorr.chat(f"Define {word}", max_tokens=3)

@llmcorr.trace(name="check")
def check(word: str) -> None:
    if word == "bad":
        raise ValueError("no bad words")

def define(word: str) -> dict:
    check(word)
    return {"definition": ask(word)}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "traced.py").write_text(FLOW)
    pd.DataFrame({"word": ["acid", "bad", "salt"]}).to_csv(tmp_path / "words.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config(srv: QuotaServer) -> llmcorr.Config:
    endpoint = llmcorr.EndpointConfig(name="q", kind="openai", base_url=srv.base_url, model="m")
    return llmcorr.Config(endpoints=[endpoint], default=["q"])


def spans_of(cfg: llmcorr.Config, run_id: str) -> list[dict]:
    with llmcorr.Store(cfg.store_path) as store:
        return store.spans(run_id)


def test_a_flow_runs_span_tree(workdir: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=6000, error_5xx_rate=0.5, seed=1)) as srv:
        cfg = config(srv)
        result = llmcorr.run("traced:define", "words.csv", config=cfg, name="t1")
        again = llmcorr.run("traced:define", "words.csv", config=cfg, name="t2")
    spans = spans_of(cfg, result.run_id)
    by_id = {s["span_id"]: s for s in spans}
    (run,) = [s for s in spans if s["kind"] == "run"]
    assert run["name"] == "run flow" and run["parent_id"] is None and run["status"] == "ok"
    rows = {s["row_index"]: s for s in spans if s["kind"] == "row"}
    assert sorted(rows) == [0, 1, 2] and all(r["parent_id"] == run["span_id"] for r in rows.values())
    assert len({s["trace_id"] for s in spans}) == 1  # one trace per execution of the run

    steps = [s for s in spans if s["kind"] == "step"]
    assert sorted(s["name"] for s in steps) == ["ask", "ask", "check", "check", "check"]  # no ask for "bad"
    failed = [s for s in steps if s["status"] == "error"]
    assert [(f["name"], f["row_index"]) for f in failed] == [("check", 1)] and "no bad words" in failed[0]["error"]
    assert rows[1]["status"] == "error" and rows[0]["status"] == "ok"
    assert all(by_id[s["parent_id"]]["kind"] == "row" for s in steps)

    llm = [s for s in spans if s["kind"] == "llm"]
    assert len(llm) == 2 and all(by_id[s["parent_id"]]["name"] == "ask" for s in llm)  # nested in their step
    for s in llm:
        a = s["attributes"]
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "m"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] == 3
        assert (
            a["llmcorr.endpoint"] == "q" and a["llmcorr.cache_hit"] is False and a["gen_ai.provider.name"] == "openai"
        )
        assert "Define" in a["gen_ai.input.messages"] and a["gen_ai.output.messages"].startswith(
            '[{"role": "assistant"'
        )
    assert sum(s["attributes"]["llmcorr.attempts"] for s in llm) > 2  # half the replies are 5xx: retries show
    row_tokens = {r["row_index"]: r["attributes"]["gen_ai.usage.input_tokens"] for r in rows.values()}
    assert row_tokens[0] == sum(s["attributes"]["gen_ai.usage.input_tokens"] for s in llm if s["row_index"] == 0)

    cached = [s for s in spans_of(cfg, again.run_id) if s["kind"] == "llm"]
    assert len(cached) == 2 and all(s["attributes"]["llmcorr.cache_hit"] for s in cached)
    assert all(s["attributes"]["gen_ai.usage.input_tokens"] == 0 for s in cached)


def test_no_trace_records_no_spans(workdir: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=6000)) as srv:
        cfg = config(srv).model_copy(update={"tracing": False})
        result = llmcorr.run("traced:define", "words.csv", config=cfg)
    assert spans_of(cfg, result.run_id) == [] and len(result.table) == 3


class _Collector:
    """An OTLP/HTTP trace collector on 127.0.0.1 that decodes what it receives."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                collector.requests.append((self.path, self.headers["Content-Type"], message))  # type: ignore[arg-type]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list:
        return [s for _, _, m in self.requests for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.fixture
def collector() -> Iterator[_Collector]:
    c = _Collector()
    yield c
    c.server.shutdown()
    c.server.server_close()


def test_otlp_export_to_a_collector(workdir: Path, collector: _Collector) -> None:
    with QuotaServer(QuotaServerConfig(rpm=6000)) as srv:
        (workdir / "llmcorr.toml").write_text(quota_toml(srv.base_url))
        r = run_cli("run", "traced:define", "--data", "words.csv", "--otlp", collector.url, "-q")
        assert r.returncode == 1, r.stderr  # the "bad" row fails (by design); the spans go out all the same
    assert collector.requests and all(p == "/v1/traces" for p, _, _ in collector.requests)
    assert all(ct == "application/x-protobuf" for _, ct, _ in collector.requests)
    spans = collector.spans()
    names = sorted(s.name for s in spans)
    assert names.count("run flow") == 1 and names.count("chat m") == 2 and names.count("check") == 3
    chat = next(s for s in spans if s.name == "chat m")
    attrs = {a.key: a.value for a in chat.attributes}
    assert attrs["gen_ai.usage.output_tokens"].int_value == 3 and attrs["llmcorr.endpoint"].string_value == "q"
    resource = collector.requests[0][2].resource_spans[0].resource
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "llmcorr"
