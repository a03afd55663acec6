"""Huge answers (issue 13, item 9), met by real `llmcorr run`s against the quota server answering 10 MB to every
request (bench/quota_shapes.py `huge_answer`).

What they show: the answer is cut at 1,000,000 characters (LLMCORR_MAX_ANSWER_CHARS) where it is read, the row
stays `ok` and its error says it was truncated and from what length; the store keeps the answer once, in the
response cache: the rows of the run and of a second run answered from the cache reference it (their output, the
answer itself, too; the LLM span keeps a preview) — a store of about one answer a row, not four 10 MB copies; a
run answered from the cache says the answer was truncated too, and both runs' output files hold the whole answer.
A body past 64 bytes per character of the cap is not read at all: that try fails, saying so.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from bench.quota_server import QuotaServer, QuotaServerConfig

from .conftest import store_path
from .test_faults import KEY, TOML, assert_clean, cli

ROWS = 3
HUGE = 10_000_000
CAP = 1_000_000  # providers/openai_answer.py MAX_ANSWER_CHARS
PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 50
inputs:
  word:
    type: string
---
user:
Define {{ word }}.
"""


def workdir(path: Path, srv: QuotaServer) -> Path:
    (path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url, rpm=6000, extra=""))
    (path / "define.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": [f"w{i}" for i in range(ROWS)]}).to_json(path / "words.jsonl", orient="records", lines=True)
    return path


def run_args(path: Path, name: str) -> list[object]:
    return [
        "run", path / "define.prompty", "--data", path / "words.jsonl", "--config", path / "llmcorr.toml",
        "--name", name, "--output", path / f"{name}.csv", "-q",
    ]  # fmt: skip


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "home").glob("llmcorr.db*"))


def test_a_10_mb_answer_is_cut_at_the_cap_stored_once_and_the_row_says_so(tmp_path: Path) -> None:
    config = QuotaServerConfig(api_key=KEY, huge_answer_rate=1.0, huge_answer_chars=HUGE, tpm=10_000_000)
    with QuotaServer(config) as srv:
        path = workdir(tmp_path, srv)
        first = cli(path, *run_args(path, "huge"))
        again = cli(path, *run_args(path, "again"))  # the same prompts: answered from the cache
        faults = srv.stats()["faults"]
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert_clean(path, first.stdout, first.stderr, again.stdout, again.stderr)
    assert faults["huge_answer"] == ROWS  # every answer was 10 MB; the rerun asked for none

    with sqlite3.connect(store_path(path / "home")) as conn:
        conn.row_factory = sqlite3.Row
        runs = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM runs")}
        rows = conn.execute(
            "SELECT v.run_id, v.status, v.error, v.response, v.output_json, v.cached, r.response AS own"
            " FROM rows_with_response v JOIN rows r USING (run_id, row_index) ORDER BY v.run_id, v.row_index"
        ).fetchall()
        cache = [r[0] for r in conn.execute("SELECT length(response) FROM cache")]
        span_answers = [
            json.loads(r[0]).get("gen_ai.output.messages", "")
            for r in conn.execute("SELECT attributes_json FROM spans WHERE kind = 'llm'")
        ]
    huge = [r for r in rows if r["run_id"] == runs["huge"]]
    cached = [r for r in rows if r["run_id"] == runs["again"]]
    assert len(huge) == len(cached) == ROWS
    for row in huge:
        assert row["status"] == "ok" and len(row["response"]) == CAP and row["cached"] == 0
        assert row["error"] == f"answer truncated at {CAP:,} characters (it had {HUGE:,})"
        assert len(row["output_json"]) < 100  # the output is the answer: not stored a second time
    assert all(row["own"] is None for row in rows)  # no row keeps a copy: the cache's is the one
    for row in cached:
        assert row["status"] == "ok" and row["cached"] == 1 and len(row["response"]) == CAP
        assert row["error"] == f"answer truncated at {CAP:,} characters"
    assert cache == [CAP] * ROWS
    assert span_answers and all(len(a) < 20_000 for a in span_answers)  # a preview, not the answer again
    # the cache's 3 answers for both runs: about 3 MB, where a copy in each row made 9 MB and four copies 240 MB
    assert store_bytes(path) < ROWS * CAP * 1.2 + 2_000_000, store_bytes(path)

    for name in ("huge", "again"):
        out = pd.read_csv(path / f"{name}.csv", keep_default_na=False)
        assert [len(v) for v in out["output"]] == [CAP] * ROWS  # read back whole from the cache
