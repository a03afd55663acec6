"""Endpoints that do what they say, and problems llmcorr does not solve refused up front — each through the real CLI
against the quota server on 127.0.0.1 (bench/quota_server.py), which counts every request it receives.

- An endpoint with a `base_url` and no `kind` (in llmcorr.toml, or `--base-url` without `--provider`) is an
  OpenAI-compatible server: its requests reach that URL (never the embedded model), and the start-of-run line and
  `llmcorr runs show` and the dashboard's run page name its kind, URL and model — on a resume too.
- `kind = "local"` with a `base_url`, `--provider local --base-url` and a bare `--model` are contradictions: one line,
  exit 2, no request, no run.
- Multiclass labels (iris: 0/1/2 with integer predictions; text classes) run as a multiclass problem, as does
  `--problem classification` on them; `--problem regression` runs them as regression; several labels in a row
  (multi-label) are refused with one line, before any request.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pandas as pd
import pytest

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.config import Config
from llmcorr.store import Store
from llmcorr.ui import create_app

from .conftest import run_cli, store_path
from .test_dashboard import serve

PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 4
---
user:
Define {{ word }}.
"""
NO_KIND = """
default = "east"

[[endpoints]]
name = "east"
base_url = "{url}"
model = "gpt-4o-mini"
{extra}
"""
CORRECT = ("--task", "is a benign tumour", "--shots", "1", "--limit", "2", "--no-gate")


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def runs_recorded(home: Path) -> int:
    if not store_path(home).exists():
        return 0
    with Store(store_path(home)) as store:
        return len(store.list_runs())


def toml(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "llmcorr.toml"
    path.write_text(NO_KIND.format(url=url, extra=extra))
    return path


@pytest.mark.parametrize("via", ["llmcorr.toml", "flags"])
def test_a_base_url_without_a_kind_is_the_server_that_answers(
    tmp_path: Path, cancer_csv: Path, llmcorr_home: Path, via: str
) -> None:
    with QuotaServer(QuotaServerConfig(rpm=6000)) as srv:
        if via == "flags":
            endpoint: tuple[str, ...] = ("--base-url", srv.base_url, "--model", "gpt-4o-mini")
            name = "openai"
        else:
            endpoint, name = ("--config", str(toml(tmp_path, srv.base_url))), "east"
        r = run_cli("correct", "-p", cancer_csv, *CORRECT, "--name", "served", *endpoint, timeout=300)
        received = srv.stats()["received"]
    assert r.returncode == 0, r.stderr
    assert received >= 2  # every corrected row was asked of the server at base_url, none of the embedded model
    named = f"{name} (openai {srv.base_url}, model gpt-4o-mini"
    start = next(line for line in r.stderr.splitlines() if line.startswith("llmcorr: problem: "))
    assert f"endpoints: {named}, concurrency " in start, start
    shown = run_cli("runs", "show", "served")
    assert shown.returncode == 0 and named in shown.stdout, shown.stdout
    with serve(create_app(Config.load())) as dashboard:
        page = httpx.get(f"{dashboard}/runs/served")
    assert page.status_code == 200 and f"<dd>{named}" in page.text  # the run page names it alike


def test_a_batch_run_and_its_resume_name_the_endpoint_that_answered(tmp_path: Path) -> None:
    (tmp_path / "define.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": [f"w{i}" for i in range(4)]}).to_json(tmp_path / "words.jsonl", orient="records", lines=True)
    with QuotaServer(QuotaServerConfig(rpm=6000, daily_requests=2)) as srv:
        config = toml(tmp_path, srv.base_url, "max_concurrency = 1")
        args = ("run", tmp_path / "define.prompty", "--data", tmp_path / "words.jsonl", "--config", config)
        stopped = run_cli(*args, "--name", "words", timeout=120)
        srv.reset()  # the daily quota is back
        resumed = run_cli("runs", "resume", "words", "--config", config, timeout=120)
        received = srv.stats()["received"]
    named = f"endpoints: east (openai {srv.base_url}, model gpt-4o-mini, concurrency 1, quota: none)"
    assert stopped.returncode == 1 and named in stopped.stderr, stopped.stderr  # the daily quota stopped it
    assert resumed.returncode == 0 and received == 2, resumed.stderr  # the two rows left, at that server
    assert any(line.startswith("llmcorr: resuming words") and named in line for line in resumed.stderr.splitlines())


def test_an_endpoint_that_contradicts_itself_is_refused_before_any_request(
    tmp_path: Path, cancer_csv: Path, llmcorr_home: Path
) -> None:
    with QuotaServer(QuotaServerConfig(rpm=6000)) as srv:
        local = toml(tmp_path, srv.base_url, 'kind = "local"')
        refusals = [
            (run_cli("correct", "-p", cancer_csv, *CORRECT, "--config", local), (str(local), "base_url", "local")),
            (
                run_cli("correct", "-p", cancer_csv, *CORRECT, "--provider", "local", "--base-url", srv.base_url),
                ("--provider local", "--base-url"),
            ),
            (run_cli("correct", "-p", cancer_csv, *CORRECT, "--model", "gpt-4o-mini"), ("--model", "--base-url")),
        ]
        received = srv.stats()["received"]
    for result, needles in refusals:
        one_line_error(result, *needles)
    assert received == 0 and runs_recorded(llmcorr_home) == 0


def iris_csv(tmp_path: Path, text_labels: bool = False) -> Path:
    """Iris (scikit-learn's copy): 3 classes, labels 0/1/2 (or their names), a base model's class predictions."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    features = iris.data.round(1).astype(str)
    named = dict(enumerate(iris.target_names)) if text_labels else {c: c for c in range(3)}
    frame = pd.DataFrame(
        {
            "id": range(len(iris.target)),
            "input": features.apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1),
            "prediction": [named[(t + 1) % 3 if i % 7 == 0 else t] for i, t in enumerate(iris.target)],
            "label": iris.target.map(named),
            "split": [("train", "valid", "test")[i % 3] for i in range(len(iris.target))],
        }
    )
    path = tmp_path / ("iris_names.csv" if text_labels else "iris.csv")
    frame.to_csv(path, index=False)
    return path


def test_multiclass_labels_run_as_multiclass_or_as_regression_when_asked(tmp_path: Path, llmcorr_home: Path) -> None:
    path, names = iris_csv(tmp_path), iris_csv(tmp_path, text_labels=True)
    multilabel = tmp_path / "tags.csv"
    pd.read_csv(names).assign(label='["setosa", "virginica"]').to_csv(multilabel, index=False)
    with QuotaServer(QuotaServerConfig(rpm=6000, response_text="Prediction: 1; Explanation: emulated")) as srv:
        endpoint = ("--base-url", srv.base_url, "--model", "m", "--shots", "1", "--limit", "2", "--no-gate")
        refused = run_cli("correct", "-p", multilabel, *endpoint)
        assert srv.stats()["received"] == 0 and runs_recorded(llmcorr_home) == 0
        ran = {
            name: run_cli("correct", "-p", data, *extra, "--name", name, "-o", tmp_path / f"{name}.csv", *endpoint)
            for name, data, extra in (
                ("auto", path, ("--task", "the iris species")),
                ("asked", path, ("--problem", "classification")),
                ("names", names, ()),
            )
        }
        regression = run_cli("correct", "-p", path, "--problem", "regression", "--name", "as-numbers", *endpoint)
        received = srv.stats()["received"]
    one_line_error(refused, "tags.csv", "'label'", "a list of labels", "multi-label correction is not supported")
    for name, result in ran.items():
        assert result.returncode == 0, result.stderr
        classes = "0, 1, 2" if name != "names" else "'setosa', 'versicolor', 'virginica'"
        assert f"llmcorr: problem: multiclass (3 classes: {classes})" in result.stderr, result.stderr
        assert "macro-F1" in result.stdout and "confusion" in result.stdout
    for name in ("auto", "asked"):  # "Prediction: 1" names the class 1
        assert list(pd.read_csv(tmp_path / f"{name}.csv")["corrected_prediction"]) == [1, 1]
    unread = pd.read_csv(tmp_path / "names.csv")  # "1" names none of the text classes: the base class stands
    assert not unread["parsed"].any() and list(unread["corrected_prediction"]) == list(unread["prediction"])
    assert regression.returncode == 0, regression.stderr
    assert "llmcorr: problem: regression" in regression.stderr and received >= 2
