"""Choose the contextual knowledge (labelled rows shown to the LLM) for each query row.

    random       the paper's way: k rows drawn at random, seeded per query row
    fixed        the same k random rows for every query (seeded once per run): every prompt then shares its
                 system + knowledge prefix, which the embedded model's KV cache reuses
    knn          the k rows most similar to the query: Tanimoto on Morgan fingerprints when the inputs are SMILES
                 and RDKit is installed, else cosine on character n-gram TF-IDF of the input text; the index is
                 built once per run. The most similar row comes last, next to the query.
    stratified   half rows the model got right, half rows it got wrong (regression: absolute error below / above
                 the pool's median), so the LLM sees both when to trust the model and when to overrule it

Multiclass, per class: kNN takes the most similar row of each true class in turn (the classes whose nearest row is
nearest first), so the LLM sees neighbours of every class it might answer; stratified takes, in turn, a row the
model got wrong and one it got right of each predicted class, the query's predicted class first.

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
    if problem == "multiclass":
        return (pool["prediction"].astype(str) == pool["label"].astype(str)).to_numpy()
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
        self.multiclass = problem == "multiclass"
        self.index: _TextIndex | _MoleculeIndex | None = None
        if strategy == "knn" and 0 < k < len(self.pool):
            texts = self.pool["input"].astype(str).tolist()
            self.index = _MoleculeIndex(texts) if _looks_like_smiles(texts) else _TextIndex(texts)
        self.right = _model_right(self.pool, problem) if strategy == "stratified" else None

    @property
    def similarity(self) -> str | None:
        """Which similarity kNN uses (None for the other strategies)."""
        return self.index.name if self.index is not None else None

    def for_row(self, sample_id: str, query_input: str, predicted: object = None) -> pd.DataFrame:
        """The knowledge for one query row (`predicted`: a multiclass row's predicted class); a row of the pool
        itself (the gate corrects validation rows) never sees itself."""
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
            order = np.argsort(-sims, kind="stable")
            order = order[keep[order]]
            top = _per_class(order, pool["label"].astype(str).to_numpy(), k) if self.multiclass else order[:k]
            return pool.iloc[top[::-1]]  # the most similar last, next to the query
        if self.right is not None and self.multiclass:
            rng = np.random.default_rng(row_seed(self.seed, sample_id))
            return pool.iloc[rng.permutation(self._strata(rng, keep, str(predicted), k))]
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

    def _strata(self, rng: np.random.Generator, keep: np.ndarray, predicted: str, k: int) -> np.ndarray:
        """Multiclass stratified picks: a wrong and a right row of each predicted class in turn (the query's predicted
        class first), each drawn at random within its stratum, until k."""
        assert self.right is not None
        predictions = self.pool["prediction"].astype(str).to_numpy()
        classes = sorted(set(predictions[keep]), key=lambda c: (c != predicted, c))
        strata = [
            list(rng.permutation(np.flatnonzero(keep & (predictions == c) & (self.right == right))))
            for c in classes
            for right in (False, True)
        ]
        picks: list[int] = []
        while len(picks) < k:
            for stratum in strata:
                if stratum and len(picks) < k:
                    picks.append(int(stratum.pop()))
        return np.array(picks, dtype=int)


def _per_class(order: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """From rows ordered by similarity (most similar first), k rows taking each class's next most similar in turn;
    the classes in order of their most similar row. The result is ordered by similarity, most similar first."""
    queues: dict[str, list[int]] = {}
    for i in order:
        queues.setdefault(str(labels[i]), []).append(int(i))
    chosen: list[int] = []
    while len(chosen) < k:
        for queue in queues.values():
            if queue and len(chosen) < k:
                chosen.append(queue.pop(0))
    rank = {int(i): r for r, i in enumerate(order)}
    return np.array(sorted(chosen, key=rank.__getitem__), dtype=int)
