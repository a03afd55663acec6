"""Demo data: a real dataset shipped in a PyPI package, a base model trained on the spot, its predictions table.

breast_cancer (classification, 569 tumours, 30 features), diabetes (regression, 442 patients, 10 features), iris
(multiclass: 150 flowers, 3 species) and wine (multiclass: 178 wines, 3 cultivars, 13 features) ship inside
scikit-learn; cmet (classification, 1,017 c-Met kinase inhibitors from ChEMBL assay CHEMBL2321810,
SMILES with pIC50, potent when pIC50 >= 7) ships inside RDKit's wheel, and its base model is a logistic regression
on Morgan fingerprints, as in the paper's molecular tasks. A multiclass demo's table has the predicted class and one
prob_<class> column per class; iris's base model sees only the two sepal measurements (the prompt shows all four), so
that it makes mistakes worth correcting. Nothing is downloaded. The split is seeded: 60% train, 20% valid, 20% test.
"""

from __future__ import annotations

from typing import Literal, TypedDict

import numpy as np
import pandas as pd

from .data import Problem

Dataset = Literal["breast_cancer", "diabetes", "cmet", "iris", "wine"]


class DemoInfo(TypedDict):
    problem: Problem
    task: str
    model: str


DATASETS: dict[str, DemoInfo] = {
    "breast_cancer": {
        "problem": "classification",
        "task": "is a benign tumour (not malignant)",
        "model": "logistic regression on 30 standardised features",
    },
    "diabetes": {
        "problem": "regression",
        "task": "the disease progression one year after baseline",
        "model": "ridge regression on 10 standardised features",
    },
    "cmet": {
        "problem": "classification",
        "task": "is a potent inhibitor of the c-Met kinase (pIC50 of at least 7)",
        "model": "logistic regression on 2048-bit Morgan fingerprints (radius 2)",
    },
    "iris": {
        "problem": "multiclass",
        "task": "the iris species",
        "model": "logistic regression on the 2 sepal measurements (the prompt shows all 4)",
    },
    "wine": {
        "problem": "multiclass",
        "task": "the cultivar (grape variety)",
        "model": "logistic regression on 13 standardised features",
    },
}
WINE_SHOWN = ["alcohol", "malic_acid", "flavanoids", "color_intensity", "hue", "proline"]  # short prompts


def _cmet() -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """The c-Met set from RDKit's wheel: fingerprints, potent (0/1), SMILES."""
    from importlib import resources

    from .molecules import require_rdkit

    require_rdkit()
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdFingerprintGenerator

    rdBase.DisableLog("rdApp.*")
    folder = resources.files("rdkit") / "Contrib" / "FreeWilson" / "data"
    smiles = dict(
        line.split()[::-1] for line in (folder / "CHEMBL2321810.smi").read_text().splitlines() if line.strip()
    )
    activity = pd.read_csv(str(folder / "CHEMBL2321810_act.csv"), dtype={"Name": str})
    activity = activity[activity["Name"].isin(smiles)].reset_index(drop=True)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    texts = [smiles[name] for name in activity["Name"]]
    bits = np.array([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in texts], dtype=np.uint8)
    return pd.DataFrame(bits), (activity["Act"] >= 7).astype(int), texts


def _describe(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """One line of text per sample: `name=value; …` for the given columns."""
    return ["; ".join(f"{c}={row[c]:.4g}" for c in columns) for _, row in frame[columns].iterrows()]


def demo_predictions(dataset: Dataset = "breast_cancer", seed: int = 0) -> pd.DataFrame:
    """Train the base model and return its predictions table (id, input, prediction, label, split)."""
    # scikit-learn is imported here, not at module level: it costs seconds that other commands need not pay
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if dataset not in DATASETS:
        raise ValueError(f"unknown demo dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    texts: list[str] | None = None
    fitted: list[str] | None = None  # the features the base model sees (None: all)
    if dataset in ("iris", "wine"):
        bunch = load_iris(as_frame=True) if dataset == "iris" else load_wine(as_frame=True)
        shown = list(bunch.feature_names) if dataset == "iris" else WINE_SHOWN
        fitted = [c for c in bunch.feature_names if c.startswith("sepal")] if dataset == "iris" else None
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        x, y = bunch.data, bunch.target
        stratify = y
    elif dataset == "cmet":
        x, y, texts = _cmet()
        model = LogisticRegression(max_iter=2000, C=0.1)
        stratify = y
    elif dataset == "breast_cancer":
        bunch = load_breast_cancer(as_frame=True)
        shown = [c for c in bunch.feature_names if c.startswith("mean ")]  # the 10 "mean" features, for short prompts
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        stratify = bunch.target
        x, y = bunch.data, bunch.target
    else:
        bunch = load_diabetes(as_frame=True, scaled=False)
        shown = list(bunch.feature_names)
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        stratify = None
        x, y = bunch.data, bunch.target
    idx = np.arange(len(x))
    train, rest = train_test_split(idx, test_size=0.4, random_state=seed, stratify=stratify)
    valid, test = train_test_split(
        rest, test_size=0.5, random_state=seed, stratify=None if stratify is None else stratify.iloc[rest]
    )
    features = x[fitted] if fitted is not None else x
    model.fit(features.iloc[train], y.iloc[train])
    problem = DATASETS[dataset]["problem"]
    split = np.empty(len(x), dtype=object)
    split[train], split[valid], split[test] = "train", "valid", "test"
    table = pd.DataFrame(
        {
            "id": [f"{dataset}-{i}" for i in idx],
            "input": texts if texts is not None else _describe(x, shown),
            "prediction": np.round(model.predict_proba(features)[:, 1], 6) if problem == "classification" else None,
            "label": y.to_numpy(),
            "split": split,
        }
    )
    if problem == "regression":
        table["prediction"] = np.round(model.predict(features), 6)
    elif problem == "multiclass":  # class names, and the model's probability of each
        names = [str(n) for n in bunch.target_names]
        probabilities = np.round(model.predict_proba(features), 6)
        table["label"] = [names[c] for c in y]
        table["prediction"] = [names[c] for c in probabilities.argmax(axis=1)]
        for k, name in enumerate(names):
            table[f"prob_{name}"] = probabilities[:, k]
        # scikit-learn lists these datasets class by class: shuffled, the first N test rows (--limit) mix the classes
        table = table.iloc[np.random.default_rng(seed).permutation(len(table))].reset_index(drop=True)
    return table
