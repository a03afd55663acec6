from __future__ import annotations

import pandas as pd

from llmcorr.correct.knowledge import random_knowledge

POOL = pd.DataFrame({"id": [f"v{i}" for i in range(20)], "input": list(range(20))})


def test_seeded_per_row_and_independent_of_order() -> None:
    a = random_knowledge(POOL, 5, seed=1, sample_id="t1")
    assert list(a["id"]) == list(random_knowledge(POOL, 5, seed=1, sample_id="t1")["id"])
    assert len(a) == 5 and a["id"].is_unique
    others = {tuple(random_knowledge(POOL, 5, seed=1, sample_id=f"t{i}")["id"]) for i in range(10)}
    assert len(others) > 1  # different rows get different knowledge
    assert list(random_knowledge(POOL, 5, seed=2, sample_id="t1")["id"]) != list(a["id"])


def test_bounds() -> None:
    assert random_knowledge(POOL, 0, 0, "x").empty
    assert len(random_knowledge(POOL, 50, 0, "x")) == 20
