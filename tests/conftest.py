"""Shared fixtures: a private LLMCORR_HOME per test, a clean environment, small real predictions tables."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from llmcorr.correct.datasets import demo_predictions
from tests.pg import postgres_server, postgres_url  # noqa: F401 (fixtures: a real PostgreSQL server, tests/pg.py)

BIN = Path(sys.executable).parent
LLMCORR = str(BIN / "llmcorr")


@pytest.fixture(autouse=True)
def llmcorr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMCORR_HOME", str(home))
    for var in list(os.environ):
        if var.startswith("OPENAI_") or var in ("LLMCORR_LOCAL_MODEL", "LLMCORR_STORE", "LLMCORR_SECRETS"):
            monkeypatch.delenv(var)
    yield home


@pytest.fixture(scope="session")
def cancer_table() -> pd.DataFrame:
    return demo_predictions("breast_cancer", seed=0)


@pytest.fixture(scope="session")
def diabetes_table() -> pd.DataFrame:
    return demo_predictions("diabetes", seed=0)


@pytest.fixture
def cancer_csv(tmp_path: Path, cancer_table: pd.DataFrame) -> Path:
    path = tmp_path / "preds.csv"
    cancer_table.to_csv(path, index=False)
    return path
