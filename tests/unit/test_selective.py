"""Selective correction's parts without an LLM: the budget's grammar and account, the row orders (least confident
first, stratified validation rows), the plan's estimate split between validation and test rows, and the metrics of
a run that left rows unsent."""

from __future__ import annotations

import pandas as pd
import pytest

import llmcorr
from llmcorr.correct.classes import Classes
from llmcorr.correct.metrics_model import CorrectionMetrics
from llmcorr.correct.select import default_gate_rows, fitting, gain_order, stratified
from llmcorr.errors import UserError
from llmcorr.providers.base import Message
from llmcorr.runs.budget import Budget, Meter, Spending, parse_budget
from llmcorr.runs.correct_options import CorrectOptions, CorrectSpecOptions
from llmcorr.runs.correction import plan_correction
from llmcorr.runs.correction_table import gate_inputs, gated, result_table
from llmcorr.runs.engine import make_scheduler
from llmcorr.runs.estimate import describe_estimate
from llmcorr.scheduler import Scheduler
from llmcorr.store import RowRecord
from llmcorr.view import flip_rows


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("500", 500, "requests"),
        (20, 20, "requests"),
        ("1.5k", 1500, "requests"),
        ("500 requests", 500, "requests"),
        ("2M-tokens", 2_000_000, "tokens"),
        ("300000tokens", 300_000, "tokens"),
        ("3usd", 3.0, "usd"),
        ("0.25 USD", 0.25, "usd"),
        ("$3", 3.0, "usd"),
    ],
)
def test_a_budget_is_requests_tokens_or_dollars(text: str | int, amount: float, unit: str) -> None:
    assert parse_budget(text) == Budget(amount=amount, unit=unit)


@pytest.mark.parametrize("text", ["", "lots", "3 euros", "-5", "0", "2.5", "$3 tokens", "1.5-tokens", "5 usd usd"])
def test_a_bad_budget_is_one_line(text: str) -> None:
    with pytest.raises(UserError, match=r"^--budget ") as caught:
        parse_budget(text)
    assert "\n" not in str(caught.value)


def test_rows_go_least_confident_first_and_validation_is_stratified() -> None:
    base = [0.99, 0.5, 0.9, 0.3, 0.02, 0.6]  # confidences 0.98, 0, 0.8, 0.4, 0.96, 0.2
    assert gain_order("classification", base) == [1, 5, 3, 2, 4, 0]
    assert gain_order("regression", [5.0, 1.0, 3.0]) == [0, 1, 2]  # no confidence: input order
    assert stratified("classification", base, 3) == [0, 2, 5]  # the middle of each third of the confidence order
    assert stratified("classification", base, 10) == list(range(6)) and stratified("classification", base, 0) == []
    assert fitting([2, 0, 1], [1.0, 5.0, 2.0], 3.0) == [2, 0] and fitting([1], [1.0, 5.0], 4.0) == []
    assert [default_gate_rows(n) for n in (0, 50, 5000)] == [20, 50, 100]


def test_multiclass_rows_go_by_the_top_two_margin_the_gate_reads() -> None:
    table = pd.DataFrame(
        {
            "input": ["a", "b", "c", "d"],
            "prediction": ["cat", "dog", "owl", "dog"],
            "label": ["cat", "owl", "owl", "dog"],
        }
        | {"prob_cat": [0.9, 0.1, 0.3, 0.2], "prob_dog": [0.05, 0.5, 0.1, 0.7], "prob_owl": [0.05, 0.4, 0.6, 0.1]}
    )
    classes = Classes(names=["cat", "dog", "owl"], prob_columns=["prob_cat", "prob_dog", "prob_owl"])
    base, confidences = gate_inputs(table, classes)  # margins 0.85, 0.1, 0.3, 0.5
    assert list(base) == [0, 1, 2, 1]
    assert gain_order("multiclass", base, confidences) == [1, 2, 3, 0]
    assert stratified("multiclass", base, 2, confidences) == [0, 2]
    with pytest.raises(ValueError, match="probabilities"):  # class names have no binary confidence to fall back on
        gain_order("multiclass", base)


def scheduler(*configs: llmcorr.EndpointConfig) -> Scheduler:
    """The run's real scheduler over these endpoints (nothing is sent: a meter only reads their counters, prices)."""
    config = llmcorr.Config.load().model_copy(update={"endpoints": list(configs)})
    return make_scheduler(config, [c.name for c in configs], None)


def endpoint(name: str = "s", **prices: float) -> llmcorr.EndpointConfig:
    return llmcorr.EndpointConfig(name=name, kind="openai", base_url="http://127.0.0.1:9/v1", model="m", **prices)


def test_the_account_reserves_first_answers_and_pays_extra_rounds_from_what_is_left() -> None:
    meter = Meter(parse_budget("5"), scheduler(endpoint()), 64)
    spending = Spending(meter)
    spending.start(spent=1, reserved=3)  # one request spent, three rows' first answers reserved
    assert spending.extra([]) == 1.0  # the fifth request fits beside the reservations
    assert spending.extra([]) is None  # a sixth would not
    assert spending.first([]) == 1.0 and spending.reserved == 2 and spending.spent == 3


def test_a_dollar_budget_needs_prices_and_charges_the_dearest_endpoint() -> None:
    with pytest.raises(UserError, match=r"endpoint s has no price_in/price_out"):
        Meter(parse_budget("3usd"), scheduler(endpoint()), 64)
    cheap, dear = endpoint("a", price_in=1.0, price_out=2.0), endpoint("b", price_in=10.0, price_out=20.0)
    meter = Meter(parse_budget("3usd"), scheduler(cheap, dear), 100)
    messages = [Message("user", "hello")]
    tokens = Meter(parse_budget("1M-tokens"), scheduler(dear), 100).cost(messages)
    assert tokens > 100 and meter.cost(messages) == pytest.approx(((tokens - 100) * 10 + 100 * 20) / 1e6)


def predictions(n: int = 30) -> pd.DataFrame:
    rows = [
        {"id": f"{split}{i}", "input": f"x={i}", "prediction": 0.05 + 0.9 * i / (n - 1), "label": i % 2, "split": split}
        for split in ("train", "valid", "test")
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_the_estimate_splits_a_budget_between_validation_and_test_rows() -> None:
    options = CorrectOptions(budget=20, shots=1)
    plan = plan_correction(predictions(), options, provider=endpoint())
    e = plan.estimate
    assert e.validation is not None and e.test is not None
    assert (e.validation.rows, e.validation.of, e.validation.requests) == (10, 30, 10)  # what half the budget pays
    assert (e.test.rows, e.test.of, e.test.requests) == (10, 30, 10) and e.requests == 20
    assert e.budget == "20 requests" and e.selective
    assert "validation 10 rows (10 requests), test 10 of 30 rows (10 requests) fit the budget" in describe_estimate(e)
    # the validation rows are spread over the confidence range, not the first ten
    valid = plan.job.valid["prediction"]
    assert valid.min() < 0.2 and valid.max() > 0.8
    unbudgeted = plan_correction(predictions(), CorrectOptions(shots=1), provider=endpoint()).estimate
    assert unbudgeted.test is not None and (unbudgeted.test.rows, unbudgeted.requests) == (30, 60)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": "2M-tok"}, r"^--budget '2M-tok': expected requests"),
        ({"budget": 1}, r"half of it does not pay for one validation row"),
        ({"budget": 10, "gate_rows": 15}, r"the 15 validation rows of --gate-rows cost 15 requests alone"),
        ({"budget": "1usd"}, r"endpoint s has no price_in/price_out"),
    ],
)
def test_a_budget_that_cannot_work_is_one_line_before_anything_is_sent(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan_correction(predictions(), CorrectOptions(shots=1, **options), provider=endpoint())


def test_metrics_cover_every_test_row_and_count_the_requests_saved() -> None:
    test = predictions(4).query("split == 'test'").reset_index(drop=True)
    test["label"] = [0, 1, 1, 0]
    rows = [
        RowRecord(0, "test0", status="ok", output={"corrected_prediction": 1.0}),  # the LLM breaks a right row
        RowRecord(1, "test1", status="not sent (gate)", output={"not_sent": "gate"}),
        RowRecord(2, "test2", status="not sent (budget)", output={"not_sent": "budget"}),
    ]
    table = result_table(test, rows, "classification")
    assert list(table["sent"][:3]) == ["sent", "not sent (gate)", "not sent (budget)"]
    assert pd.isna(table["sent"][3])  # not processed yet
    assert list(table["corrected_prediction"]) == [1.0, *test["prediction"][1:]]  # unsent: the base prediction
    _, stored = gated(table, None, "classification", samples=3)
    metrics = CorrectionMetrics.model_validate(stored)
    assert metrics.n == 4 and metrics.selection is not None
    assert (metrics.selection.sent, metrics.selection.not_sent_gate, metrics.selection.not_sent_budget) == (1, 1, 1)
    assert metrics.selection.requests_saved == 6  # two rows' three samples
    shown = dict(flip_rows(metrics))  # what `runs show`, the dashboard and the report list under the metrics
    assert (
        shown["requests saved"] == "6"
        and shown["test rows sent"] == "1 of 4 (not sent: 1 by the gate, 1 by the budget)"
    )
    everything = gated(result_table(test, rows[:1], "classification"), None, "classification")[1]
    assert "selection" not in everything  # every row sent (or not yet processed): nothing to say


def test_a_run_recorded_before_selective_correction_is_made_again_as_it_ran() -> None:
    old = CorrectSpecOptions.model_validate({"problem": "classification", "gate": True, "gate_rows": 5})
    asked = old.asked("t.jinja", {"max_tokens": 64})
    assert (asked.selective, asked.gate_sample, asked.budget) == (False, "first", None)
    plan = plan_correction(predictions(), asked.model_copy(update={"template": None}), provider=endpoint())
    assert list(plan.job.valid["id"]) == [f"valid{i}" for i in range(5)]  # its first rows, as it chose them
    assert not plan.selection.staged and plan.estimate.test is None  # every row at once, as before
