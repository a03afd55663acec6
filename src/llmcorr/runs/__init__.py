"""The engine: runs, their specs, and the LLMCorr run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .._sync import run_sync
from .correction import CorrectionResult, correct_async
from .spec import RunSpec


def correct(predictions: str | Path | pd.DataFrame, **options: Any) -> CorrectionResult:
    """Correct a model's test-split predictions with an LLM (LLMCorr) and record the run in the store.

    `predictions` is a CSV/JSONL/Parquet file or a DataFrame with columns id, input, prediction, label, split
    (remap with `columns={"input": "smiles"}`). Options: task, shots (3), limit, seed (0), name, output, problem
    ("auto" | "classification" | "regression"), template, max_tokens (64), provider (a Provider or ProviderConfig;
    default: the embedded local model), config, progress (False).
    Works in scripts and inside a running event loop (Jupyter).
    """
    return run_sync(correct_async(predictions, **options))


__all__ = ["CorrectionResult", "RunSpec", "correct", "correct_async"]
