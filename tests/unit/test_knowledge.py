from __future__ import annotations

import pandas as pd

from llmcorr.correct.knowledge import Knowledge, random_knowledge

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


def _pool(problem: str = "classification") -> pd.DataFrame:
    words = ["benzene ring", "benzene ring aromatic", "linear alkane chain", "alkane chain long", "acid group"] * 4
    return pd.DataFrame(
        {
            "id": [f"v{i}" for i in range(20)],
            "input": [f"{w} {i}" for i, w in enumerate(words)],
            "prediction": [0.9 if i % 4 else 0.1 for i in range(20)],
            "label": [1 if i % 3 else 0 for i in range(20)],
        }
    )


def test_knn_picks_the_most_similar_inputs_and_builds_its_index_once() -> None:
    pool = _pool()
    knowledge = Knowledge(pool, 4, "knn", seed=0, problem="classification")
    assert knowledge.similarity == "tfidf-char"
    picked = knowledge.for_row("t1", "benzene ring aromatic")
    assert len(picked) == 4 and all("benzene" in s for s in picked["input"])
    assert "aromatic" in picked["input"].iloc[-1]  # the closest comes last, next to the query
    assert all("alkane" in s for s in knowledge.for_row("t2", "alkane chain")["input"])
    assert Knowledge(pool, 4, "random", 0, "classification").similarity is None


def test_stratified_shows_both_right_and_wrong_cases() -> None:
    pool = _pool()
    right = (pool["prediction"] >= 0.5) == (pool["label"] >= 0.5)
    knowledge = Knowledge(pool, 4, "stratified", seed=3, problem="classification")
    for sample in ("a", "b", "c"):
        picked = knowledge.for_row(sample, "")
        flags = right.loc[picked.index]
        assert len(picked) == 4 and flags.sum() == 2 and (~flags).sum() == 2 and picked["id"].is_unique
    assert list(knowledge.for_row("a", "")["id"]) == list(knowledge.for_row("a", "")["id"])  # seeded per row
    only_right = pool[right]
    assert len(Knowledge(only_right, 3, "stratified", 0, "classification").for_row("a", "")) == 3  # fills up


def test_knn_on_smiles_uses_tanimoto_when_rdkit_is_there() -> None:
    smiles = ["CCO", "CCCO", "CCCCO", "c1ccccc1", "c1ccccc1C", "c1ccccc1CC", "CC(=O)O", "CCC(=O)O"]
    pool = pd.DataFrame({"id": smiles, "input": smiles, "prediction": [0.5] * 8, "label": [1, 0] * 4})
    knowledge = Knowledge(pool, 2, "knn", seed=0, problem="classification")
    try:
        import rdkit  # noqa: F401
    except ImportError:
        assert knowledge.similarity == "tfidf-char"
    else:
        assert knowledge.similarity == "tanimoto-morgan2"
    assert set(knowledge.for_row("q", "c1ccccc1CCC")["input"]) <= {"c1ccccc1C", "c1ccccc1CC", "c1ccccc1"}


def test_fixed_gives_every_query_the_same_rows() -> None:
    knowledge = Knowledge(_pool(), 5, "fixed", seed=1, problem="classification")
    first = list(knowledge.for_row("a", "x")["id"])
    assert len(first) == 5 and all(list(knowledge.for_row(s, s)["id"]) == first for s in "bcdef")
    assert list(Knowledge(_pool(), 5, "fixed", seed=2, problem="classification").for_row("a", "x")["id"]) != first


def test_a_pool_row_never_sees_itself() -> None:
    pool = _pool()
    for strategy in ("random", "fixed", "knn", "stratified"):
        knowledge = Knowledge(pool, 19, strategy, seed=0, problem="classification")
        picked = knowledge.for_row("v3", str(pool.loc[3, "input"]))
        assert "v3" not in set(picked["id"]) and len(picked) == 19, strategy
    gate_gate = Knowledge(pool, 3, "knn", seed=0, problem="classification").for_row("v1", str(pool.loc[1, "input"]))
    assert "v1" not in set(gate_gate["id"])


def test_molecule_descriptions() -> None:
    from llmcorr.correct.molecules import describe

    text = describe("c1ccccc1O")  # phenol
    assert text is not None and text.startswith("7 heavy atoms, 1 rings (1 aromatic)") and "1 H-bond donors" in text
    assert describe("not a molecule") is None


def _classes_pool() -> pd.DataFrame:
    """18 rows of three classes; the model is wrong on every third row (it says the next class)."""
    names = ["setosa", "versicolor", "virginica"]
    words = {"setosa": "short petal", "versicolor": "medium petal", "virginica": "long petal"}
    labels = [names[i % 3] for i in range(18)]
    predictions = [names[(i + 1) % 3] if i % 3 == (i // 3) % 3 else labels[i] for i in range(18)]
    return pd.DataFrame(
        {
            "id": [f"v{i}" for i in range(18)],
            "input": [f"{words[c]} {i}" for i, c in enumerate(labels)],
            "prediction": predictions,
            "label": labels,
        }
    )


def test_multiclass_stratified_takes_wrong_and_right_cases_of_each_predicted_class_the_querys_first() -> None:
    pool = _classes_pool()
    right = pool["prediction"] == pool["label"]
    knowledge = Knowledge(pool, 6, "stratified", seed=1, problem="multiclass")
    for predicted in ("setosa", "versicolor", "virginica"):
        picked = knowledge.for_row("q", "", predicted)
        assert len(picked) == 6 and picked["id"].is_unique
        for c in ("setosa", "versicolor", "virginica"):  # every predicted class, once wrong and once right
            of_class = picked["prediction"] == c
            assert right.loc[picked.index][of_class].sum() == 1 and (~right.loc[picked.index][of_class]).sum() == 1
        assert list(knowledge.for_row("q", "", predicted)["id"]) == list(picked["id"])  # seeded per row
    small = Knowledge(pool, 2, "stratified", seed=1, problem="multiclass")
    for predicted in ("setosa", "virginica"):
        picked = small.for_row("q", "", predicted)
        assert set(picked["prediction"]) == {predicted}  # with two shots: the query's predicted class only
        assert sorted(right.loc[picked.index]) == [False, True]


def test_multiclass_knn_shows_the_nearest_rows_of_every_class() -> None:
    pool = _classes_pool()
    knowledge = Knowledge(pool, 3, "knn", seed=0, problem="multiclass")
    picked = knowledge.for_row("q", "long petal 5")
    assert sorted(picked["label"]) == ["setosa", "versicolor", "virginica"]  # one of each, not three virginica
    assert picked["label"].iloc[-1] == "virginica" and picked["input"].iloc[-1] == "long petal 5"  # nearest last
    binary = Knowledge(pool.assign(label=1, prediction=0.9), 3, "knn", seed=0, problem="classification")
    assert all("long" in s for s in binary.for_row("q", "long petal 5")["input"])  # binary kNN: nearest only
