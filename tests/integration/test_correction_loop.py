"""The LLMCorr loop against a scripted OpenAI-compatible server on 127.0.0.1 that answers malformed text, flips and
votes on demand: format retry, double-check, self-consistency, each round a traced step; and the knowledge options."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import llmcorr
from tests.servers import ScriptedServer, ok

from .conftest import run_cli


def endpoint(srv: ScriptedServer) -> llmcorr.EndpointConfig:
    return llmcorr.EndpointConfig(name="s", kind="openai", base_url=srv.base_url, model="m", max_concurrency=1)


def first_test_row(cancer_csv: Path) -> tuple[str, float]:
    table = pd.read_csv(cancer_csv)
    row = table[table["split"] == "test"].iloc[0]
    return str(row["id"]), float(row["prediction"])


def said(base: float, agree: bool) -> str:
    label = (base >= 0.5) == agree
    return f"Prediction: {label}; Explanation: scripted"


def test_a_malformed_answer_is_asked_again_with_the_format(cancer_csv: Path) -> None:
    _, base = first_test_row(cancer_csv)
    with ScriptedServer() as srv:
        srv.script.extend([ok("I think it is probably fine"), ok(said(base, agree=False))])
        result = llmcorr.correct(cancer_csv, limit=1, provider=endpoint(srv), gate=False, cache=False)
    assert len(srv.requests) == 2
    retry = srv.requests[1]["body"]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is probably fine"}
    assert "Reply exactly in the format: Prediction: <True or False>" in retry[-1]["content"]
    row = result.table.iloc[0]
    assert row["parsed"] and row["corrected_prediction"] == 1 - base  # the retried answer flipped it
    with llmcorr.Store(llmcorr.Config.load().store_path) as store:
        stored = store.rows(result.run_id)[0]
        steps = [s["name"] for s in store.spans(result.run_id) if s["kind"] == "step"]
    assert [r["kind"] for r in stored.output["rounds"][0]] == ["answer", "format_retry"]
    assert steps.count("answer") == 1 and steps.count("format_retry") == 1 and steps.count("decide") == 1


def test_double_check_can_talk_the_llm_out_of_a_flip(cancer_csv: Path) -> None:
    _, base = first_test_row(cancer_csv)
    with ScriptedServer() as srv:
        srv.script.extend([ok(said(base, agree=False)), ok(said(base, agree=True))])
        kept = llmcorr.correct(cancer_csv, limit=1, provider=endpoint(srv), gate=False, double_check=2, cache=False)
        assert len(srv.requests) == 2  # the second answer agrees with the model: no third round
        assert "Double-check" in srv.requests[1]["body"]["messages"][-1]["content"]
        srv.script.extend([ok(said(base, agree=False))])
        flipped = llmcorr.correct(
            cancer_csv, limit=1, provider=endpoint(srv), gate=False, cache=False
        )  # no double-check
    assert kept.table.iloc[0]["corrected_prediction"] == base
    assert flipped.table.iloc[0]["corrected_prediction"] == 1 - base
    assert kept.metrics["flips"]["changed"] == 0 and flipped.metrics["flips"]["changed"] == 1


def test_self_consistency_votes_over_samples(cancer_csv: Path) -> None:
    _, base = first_test_row(cancer_csv)
    with ScriptedServer() as srv:
        srv.script.extend([ok(said(base, False)), ok(said(base, True)), ok(said(base, False))])
        result = llmcorr.correct(cancer_csv, limit=1, provider=endpoint(srv), gate=False, samples=3, cache=False)
        bodies = [r["body"] for r in srv.requests]
    assert len(bodies) == 3 and all(b["temperature"] == 0.7 for b in bodies)
    assert len({b["seed"] for b in bodies}) == 3  # one seed per sample
    assert result.table.iloc[0]["corrected_prediction"] == 1 - base  # 2 of 3 overrule the model
    with llmcorr.Store(llmcorr.Config.load().store_path) as store:
        output = store.rows(result.run_id)[0].output
    assert output["votes"] == 3 and output["for_flip"] == 2 and output["for_model"] == 1


def test_knowledge_strategies_and_sources_reach_the_prompt(cancer_csv: Path) -> None:
    table = pd.read_csv(cancer_csv)
    train_ids = set(table.loc[table["split"] == "train", "id"])
    with ScriptedServer() as srv:
        llmcorr.correct(
            cancer_csv, limit=2, provider=endpoint(srv), gate=False, knowledge="knn", knowledge_from="train", shots=4
        )
        knn = [r["body"]["messages"] for r in srv.requests]
        srv.requests.clear()
        llmcorr.correct(
            cancer_csv, limit=2, provider=endpoint(srv), gate=False, knowledge="fixed", shots=2, name="fixed"
        )
        fixed = [r["body"]["messages"] for r in srv.requests]
    assert all(len([m for m in msgs if m["role"] == "assistant"]) == 4 for msgs in knn)
    shown = {m["content"] for msgs in knn for m in msgs if m["role"] == "user"}
    train_inputs = set(table.loc[table["id"].isin(train_ids), "input"])
    assert any(any(inp in text for inp in train_inputs) for text in shown)
    assert fixed[0][:-1] == fixed[1][:-1]  # fixed shots: the same prefix for every row


def _gate_table() -> pd.DataFrame:
    """A model that is right when confident and wrong when unsure, and an LLM that always answers True: corrections
    fix the unsure rows and break the confident negatives, so only a gate can make them pay."""
    rows = []
    for split in ("train", "valid", "test"):
        for i in range(30):
            kind = i % 3  # 0: confident positive, 1: confident negative, 2: unsure and wrong
            prediction, label = [(0.95, 1), (0.05, 0), (0.45, 1)][kind]
            rows.append(
                {"id": f"{split}{i}", "input": f"x={i}", "prediction": prediction, "label": label, "split": split}
            )
    return pd.DataFrame(rows)


def test_the_gate_applies_corrections_only_where_validation_says_they_help() -> None:
    with ScriptedServer() as srv:  # its default answer: "Prediction: True"
        result = llmcorr.correct(_gate_table(), provider=endpoint(srv), shots=2, selective=False)
    m = result.metrics
    assert m["gate"]["policy"].startswith("where the model's confidence <") and m["gate"]["validation_rows"] == 30
    assert m["gate"]["validation_accuracy"]["gated"] == 1.0 and m["gate"]["validation_accuracy"]["corrected"] < 1.0
    assert m["corrected"]["accuracy"] == 1.0 and m["ungated"]["corrected"]["accuracy"] == 2 / 3
    assert m["gate"]["applied_on_test"] == 10 and int(result.table["gate_applied"].sum()) == 10
    assert len(srv.requests) == 60  # 30 test rows + 30 validation rows


def test_the_gate_keeps_the_base_model_when_validation_shows_no_gain() -> None:
    table = _gate_table()
    table.loc[table["prediction"] == 0.45, "label"] = 0  # now the model is right everywhere: every flip hurts
    with ScriptedServer() as srv:  # "Prediction: True" overrules every negative prediction
        result = llmcorr.correct(table, provider=endpoint(srv), shots=2, selective=False)
    m = result.metrics
    assert m["gate"]["policy"] == "never" and m["gate"]["applied_on_test"] == 0
    assert m["corrected"] == m["base"] and m["flips"]["changed"] == 0  # the test metrics are the base model's
    assert m["ungated"]["corrected"]["accuracy"] < m["base"]["accuracy"]  # what the correction alone would do
    assert (result.table["corrected_prediction"] == result.table["prediction"]).all()
    assert (result.table["llm_prediction"] != result.table["prediction"]).any()


def test_report_files_for_classification_and_regression(
    cancer_csv: Path, diabetes_table: pd.DataFrame, tmp_path: Path
) -> None:
    with ScriptedServer() as srv:
        llmcorr.correct(_gate_table(), provider=endpoint(srv), shots=2, name="gated")
        srv.default = ok("Prediction: 150; Explanation: about average")
        llmcorr.correct(diabetes_table, provider=endpoint(srv), limit=25, name="reg")
    r = run_cli("report", "gated", "-o", tmp_path / "gated.html")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "gated.html").read_text()
    for text in ("95% bootstrap intervals", "McNemar", "The gate", "where the model&#39;s confidence", "Brier score"):
        assert text in html, text
    assert 'id="confusion-base"' in html and 'data-chart="calibration"' in html
    # the gate chose on validation which test rows to send: 10 of 30, and the report says what that saved
    assert re.search(r'id="requests-saved"><td>requests saved</td><td></td><td class="num">20</td>', html)
    assert "10 of 30 test rows sent; not sent: 20 by the gate, 0 by the budget" in html
    assert "wrong → right" in html and "LLM: “scripted”" in html  # flips with the LLM's explanation
    assert "<script" not in html and "http" not in html.split("</style>")[0]  # self-contained: nothing fetched
    r = run_cli("report", "reg", "-o", tmp_path / "reg.html")
    assert r.returncode == 0, r.stderr
    reg = (tmp_path / "reg.html").read_text()
    assert "RMSE" in reg and 'data-chart="scatter"' in reg and "validation RMSE" in reg
    assert run_cli("report", "nope").returncode == 2


def test_molecules_demo_data_and_descriptions_in_the_prompt() -> None:
    from llmcorr.correct.datasets import demo_predictions

    table = demo_predictions("cmet")
    assert len(table) == 1017 and set(table["split"]) == {"train", "valid", "test"}
    assert table["input"].str.contains("c1").mean() > 0.9  # SMILES strings
    test = table[table["split"] == "test"]
    with ScriptedServer() as srv:
        result = llmcorr.correct(
            table, provider=endpoint(srv), limit=2, shots=2, describe_molecules=True, knowledge="knn", gate=False
        )
        prompt = srv.requests[0]["body"]["messages"]
    assert "Description: " in prompt[-1]["content"] and "heavy atoms" in prompt[-1]["content"]
    assert sum("Description: " in m["content"] for m in prompt) == 3  # two shots and the query
    assert result.table["id"].tolist() == test["id"].head(2).tolist()
    with llmcorr.Store(llmcorr.Config.load().store_path) as store:
        spec = store.get_run(result.run_id).spec
    assert spec["options"]["similarity"] == "tanimoto-morgan2" and spec["options"]["describe_molecules"] is True


ANIMALS = [  # label, the model's class, its probabilities of cat, dog, owl
    ("cat", "cat", (0.9, 0.05, 0.05)),
    ("dog", "dog", (0.05, 0.9, 0.05)),
    ("owl", "dog", (0.05, 0.5, 0.45)),  # unsure, and wrong
]


def _animals(tmp_path: Path) -> Path:
    """Three classes: the model is sure and right on cats and dogs, unsure and wrong on owls (it says dog)."""
    rows = []
    for split in ("train", "valid", "test"):
        for i in range(30):
            label, prediction, (cat, dog, owl) = ANIMALS[i % 3]
            rows.append(
                {
                    "id": f"{split}{i}",
                    "input": f"x={i}",
                    "prediction": prediction,
                    "label": label,
                    "split": split,
                    "prob_cat": cat,
                    "prob_dog": dog,
                    "prob_owl": owl,
                }
            )
    path = tmp_path / "animals.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_multiclass_answers_are_parsed_into_classes_and_a_malformed_one_is_asked_again(tmp_path: Path) -> None:
    with ScriptedServer() as srv:
        srv.script.extend([ok("It is a bird, I think"), ok("Prediction:  OWL ; Explanation: scripted")])
        result = llmcorr.correct(_animals(tmp_path), limit=1, provider=endpoint(srv), gate=False, cache=False)
        first, retry = (r["body"]["messages"] for r in srv.requests)
    assert result.problem == "multiclass" and len(srv.requests) == 2
    assert "The classes are: cat, dog, owl." in first[0]["content"]
    assert first[-1]["content"].startswith("Sample: x=0\nThe model predicts cat (cat 0.900, dog 0.050, owl 0.050).")
    shots = [m["content"] for m in first if m["role"] == "assistant"]
    assert len(shots) == 3 and all(s in ("Prediction: cat", "Prediction: dog", "Prediction: owl") for s in shots)
    assert "Reply exactly in the format: Prediction: <one of: cat, dog, owl>" in retry[-1]["content"]
    row = result.table.iloc[0]
    assert row["parsed"] and row["corrected_prediction"] == "owl" and row["explanation"] == "scripted"
    m = result.metrics
    assert m["flips"] == {"changed": 1, "wrong_to_right": 0, "right_to_wrong": 1}
    assert m["confusion"]["corrected"] == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_the_multiclass_gate_works_on_the_models_margin_and_the_report_shows_both_confusions(tmp_path: Path) -> None:
    data = _animals(tmp_path)
    with ScriptedServer(default=ok("Prediction: owl; Explanation: scripted")) as srv:
        out = tmp_path / "out.csv"  # every row sent (selective correction: tests/integration/test_selective.py)
        result = llmcorr.correct(data, provider=endpoint(srv), shots=2, name="animals", output=out, selective=False)
        assert len(srv.requests) == 60  # 30 test rows + 30 validation rows
        rerun = run_cli("runs", "rerun", "animals", "--name", "again", "-q")  # every answer cached
        assert rerun.returncode == 0, rerun.stderr
        assert len(srv.requests) == 60
    m = result.metrics
    assert m["gate"]["policy"].startswith("where the model's confidence <") and m["gate"]["applied_on_test"] == 10
    assert m["base"]["accuracy"] == pytest.approx(2 / 3) and m["corrected"]["accuracy"] == 1.0
    assert m["corrected"]["macro_f1"] == 1.0 and m["ungated"]["corrected"]["accuracy"] == pytest.approx(1 / 3)
    low, high = m["ci95"]["base"]["macro_f1"]
    assert low <= m["base"]["macro_f1"] <= high and m["ci95"]["delta"]["accuracy"] is not None
    assert m["confusion"]["base"] == [[10, 0, 0], [0, 10, 0], [0, 10, 0]]
    assert m["confusion"]["corrected"] == [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    written = pd.read_csv(tmp_path / "out.csv")
    assert (written["corrected_prediction"] == written["label"]).all() and (written["llm_prediction"] == "owl").all()
    with llmcorr.Store(llmcorr.Config.load().store_path) as store:
        again = store.get_run("again")
    assert again.metrics == result.metrics.to_dict() and again.input_tokens == 0

    r = run_cli("report", "animals", "-o", tmp_path / "animals.html")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "animals.html").read_text()
    for side, expected in (("base", [10, 0, 0, 0, 10, 0, 0, 10, 0]), ("corrected", [10, 0, 0, 0, 10, 0, 0, 0, 10])):
        shown = html.split(f'id="confusion-{side}"')[1].split("</table>")[0]
        assert [int(c.split(">")[-1]) for c in shown.split("</td>")[:-1]] == expected
        assert all(f"predicted {c}" in shown and f"label {c}" in shown for c in ("cat", "dog", "owl"))
    for text in ("macro-F1", "log-loss", "recall: owl", "McNemar", "wrong → right", 'data-chart="calibration"'):
        assert text in html, text
