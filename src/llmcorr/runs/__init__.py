"""The engine: runs, their specs, and the LLMCorr run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .._sync import run_sync
from .batch import RunResult, rerun_batch_async, resume_batch_async, run_batch_async
from .control import rerun_any_async, resume_any_async
from .correction import CorrectionResult, correct_async, estimate_async, resume_async
from .estimate import Estimate
from .flows import achat, chat
from .spec import RunSpec


def correct(predictions: str | Path | pd.DataFrame, **options: Any) -> CorrectionResult:
    """Correct a model's test-split predictions with an LLM (LLMCorr) and record the run in the store.

    `predictions` is a CSV/JSONL/Parquet file or a DataFrame with columns id, input, prediction, label, split
    (remap with `columns={"input": "smiles"}`). Options: task, shots (3), limit, seed (0), name, output, problem
    ("auto" | "classification" | "regression"), template, max_tokens (64), endpoints (names from llmcorr.toml),
    provider (a Provider or EndpointConfig; default: the embedded local model), config, progress (False),
    confirm (called with the estimate before anything is spent; return False to cancel), cache (True: answers
    already in the response cache cost nothing).
    Works in scripts and inside a running event loop (Jupyter).
    """
    return run_sync(correct_async(predictions, **options))


def estimate(predictions: str | Path | pd.DataFrame, **options: Any) -> Estimate:
    """What `correct` would spend with the same arguments (requests, tokens, cost, ETA); nothing is sent."""
    return run_sync(estimate_async(predictions, **options))


def run(flow: Any, data: Any = None, **options: Any) -> RunResult:
    """Run a flow over every row of `data` and record it as a run; returns the rows joined with their outputs.

    `flow` is a function, a class, "module:name", "file.py:Name", or a `.prompty` file. `data` is a CSV/JSONL/Parquet
    path or a DataFrame (pandas, polars). Options: init (class arguments), mapping ({arg: "${data.column}"} or
    "${run.outputs.key}" with upstream=RUN_ID), upstream, output (written as rows finish), name, limit, max_tokens
    (256), temperature (0), seed, concurrency, endpoints, provider, config, cache (True), resume_from (a run whose
    finished rows are reused, no token spent), progress (False), executor ("local", or "ray": the rows spread over a
    Ray cluster, `pip install 'llmcorr[ray]'`), ray_address (default: start a local Ray instance).
    Inside a Python flow, `llmcorr.chat(...)` (sync) or `await llmcorr.achat(...)` asks the run's LLM.
    """
    return run_sync(run_batch_async(flow, data, **options))


def resume(run: str, **options: Any) -> CorrectionResult | RunResult:
    """Continue a stopped run (interrupted, cancelled or failed): finished rows are kept, failed rows retried.

    Options for a correct run: predictions (needed again for a run made from a DataFrame), output, progress,
    config, provider; for a prompt or flow run: data, flow (needed again when not importable), output, progress,
    config.
    """
    return run_sync(resume_any_async(run, **options))


__all__ = [
    "CorrectionResult",
    "Estimate",
    "RunResult",
    "RunSpec",
    "achat",
    "chat",
    "correct",
    "correct_async",
    "estimate",
    "estimate_async",
    "rerun_any_async",
    "rerun_batch_async",
    "resume",
    "resume_any_async",
    "resume_async",
    "resume_batch_async",
    "run",
    "run_batch_async",
]
