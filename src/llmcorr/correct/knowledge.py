"""Choose the contextual knowledge (labelled rows shown to the LLM) for each query row."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def row_seed(seed: int, sample_id: str) -> int:
    """A seed for one query row that depends only on the run seed and the row's id (not on order or limit)."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def random_knowledge(pool: pd.DataFrame, k: int, seed: int, sample_id: str) -> pd.DataFrame:
    """The paper's selection: k rows drawn at random from the pool, seeded per query row.

    `k <= 0` selects nothing (zero-shot); `k >= len(pool)` selects the whole pool.
    """
    if k <= 0:
        return pool.iloc[:0]
    if k >= len(pool):
        return pool
    rng = np.random.default_rng(row_seed(seed, sample_id))
    picks = rng.choice(len(pool), size=k, replace=False)
    return pool.iloc[np.sort(picks)]
