"""Choose the contextual knowledge (labelled rows shown to the LLM) for each query row.

    random       the paper's way: k rows drawn at random, seeded per query row
    fixed        the same k random rows for every query (seeded once per run): every prompt then shares its
                 system + knowledge prefix, which the embedded model's KV cache reuses
    knn          the k rows most similar to the query: Tanimoto on Morgan fingerprints when the inputs are SMILES
                 and RDKit is installed, else cosine on character n-gram TF-IDF of the input text; the index is
                 built once per run. The most similar row comes last, next to the query.
    stratified   half rows the model got right, half rows it got wrong (regression: absolute error below / above
                 the pool's median), so the LLM sees both when to trust the model and when to overrule it

Every strategy is deterministic given the run seed and the row's id (not its position, not --limit).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import pandas as pd

Strategy = Literal["random", "fixed", "knn", "stratified"]
STRATEGIES: tuple[str, ...] = ("random", "fixed", "knn", "stratified")


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


def _model_right(pool: pd.DataFrame, problem: str) -> np.ndarray:
    prediction, label = pool["prediction"].astype(float).to_numpy(), pool["label"].astype(float).to_numpy()
    if problem == "classification":
        return (prediction >= 0.5) == (label >= 0.5)
    error = np.abs(prediction - label)
    return error <= np.median(error)


class _TextIndex:
    """Cosine similarity on character 2–4-gram TF-IDF: works for text and, roughly, for SMILES."""

    name = "tfidf-char"

    def __init__(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform(texts)

    def similarity(self, text: str) -> np.ndarray:
        return np.asarray((self.matrix @ self.vectorizer.transform([text]).T).todense()).ravel()


class _MoleculeIndex:
    """Tanimoto similarity on 2048-bit Morgan fingerprints (radius 2), as cheminformatics does."""

    name = "tanimoto-morgan2"

    def __init__(self, smiles: list[str]) -> None:
        from rdkit import DataStructs

        self._bulk = DataStructs.BulkTanimotoSimilarity
        self.fingerprints = [self._fingerprint(s) for s in smiles]

    @staticmethod
    def _fingerprint(smiles: str) -> Any:
        from rdkit import Chem, rdBase
        from rdkit.Chem import rdFingerprintGenerator

        rdBase.DisableLog("rdApp.*")
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise ValueError(smiles)
        return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048).GetFingerprint(mol)

    def similarity(self, smiles: str) -> np.ndarray:
        try:
            query = self._fingerprint(smiles)
        except ValueError:
            return np.zeros(len(self.fingerprints))
        return np.asarray(self._bulk(query, self.fingerprints))


def _looks_like_smiles(texts: list[str]) -> bool:
    """True when RDKit is installed and it parses a sample of the inputs as molecules."""
    try:
        from rdkit import Chem, rdBase
    except ImportError:
        return False
    rdBase.DisableLog("rdApp.*")
    sample = [t for t in texts[:50] if t and " " not in t.strip()]
    return bool(sample) and len(sample) == len(texts[:50]) and all(Chem.MolFromSmiles(t) is not None for t in sample)


class Knowledge:
    """Knowledge selection for one run: built once (the kNN index included), then asked per query row."""

    def __init__(self, pool: pd.DataFrame, k: int, strategy: str, seed: int, problem: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown knowledge strategy {strategy!r}")
        self.pool, self.k, self.strategy, self.seed = pool.reset_index(drop=True), k, strategy, seed
        self.index: _TextIndex | _MoleculeIndex | None = None
        if strategy == "knn" and 0 < k < len(self.pool):
            texts = self.pool["input"].astype(str).tolist()
            self.index = _MoleculeIndex(texts) if _looks_like_smiles(texts) else _TextIndex(texts)
        self.right = _model_right(self.pool, problem) if strategy == "stratified" else None

    @property
    def similarity(self) -> str | None:
        """Which similarity kNN uses (None for the other strategies)."""
        return self.index.name if self.index is not None else None

    def for_row(self, sample_id: str, query_input: str) -> pd.DataFrame:
        """The knowledge for one query row; a row of the pool itself (the gate corrects validation rows) never
        sees itself."""
        pool = self.pool
        own = np.flatnonzero(pool["id"].astype(str).to_numpy() == sample_id)
        keep = np.ones(len(pool), dtype=bool)
        keep[own] = False
        k = min(self.k, int(keep.sum()))
        if k <= 0:
            return pool.iloc[:0]
        if k >= keep.sum():
            return pool[keep]
        if self.index is not None:
            sims = self.index.similarity(query_input)
            sims[~keep] = -np.inf
            top = np.argsort(-sims, kind="stable")[:k]
            return pool.iloc[top[::-1]]  # the most similar last, next to the query
        if self.right is not None:
            rng = np.random.default_rng(row_seed(self.seed, sample_id))
            right, wrong = np.flatnonzero(self.right & keep), np.flatnonzero(~self.right & keep)
            n_wrong = min(len(wrong), max(1, k // 2) if len(wrong) else 0, k)
            n_right = min(len(right), k - n_wrong)
            n_wrong = min(len(wrong), k - n_right)  # fill from the other side when one runs short
            picks = np.concatenate(
                [rng.choice(right, n_right, replace=False), rng.choice(wrong, n_wrong, replace=False)]
            )
            return pool.iloc[rng.permutation(picks)]
        return random_knowledge(pool[keep], k, self.seed, "" if self.strategy == "fixed" else sample_id)
