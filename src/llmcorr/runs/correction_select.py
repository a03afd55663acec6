"""Selective correction in a correct run: which rows are sent, chosen before spending on them.

    plan       `validation_rows`: the rows the gate learns from, a fixed number stratified by confidence (with a
               budget: at most what half of it pays for); `Selection.estimate`: what the run spends, split between
               validation and test rows, and how many test rows fit the budget
    stage 1    the validation rows are answered (correction.py `CorrectionPlan.stages`)
    decide     `Selection.decide`: the gate is chosen on them; the test rows it would never let a correction through on
               are not sent (`not sent (gate)`); of the rest, the least confident first, those whose first answers fit
               what the validation rows left of the budget are sent, the others not (`not sent (budget)`)
    stage 2    the chosen test rows are answered; the others are recorded as they are, their output the base
               prediction

A multiclass run orders, stratifies and gates rows by the model's top-two margin (`gate_inputs`: class indices and
`Classes.confidence`), as the gate applied to the output does; a binary run by |2p - 1|.

Without the gate's selection (`--send-all`, `--no-gate`) and without a budget, every row goes in one stage, as before.
The decision depends only on the stored validation rows and the options, so a resume makes it again (and sends no
row twice: the rows recorded as not sent are dropped when the run is reopened and decided anew, as a retried
validation row can move the gate) and a rerun, answered from the cache, chooses the same rows.
"""

from __future__ import annotations

import pandas as pd

from ..correct.classes import Classes
from ..correct.corrector import Corrector
from ..correct.gate import choose_gate
from ..correct.select import fitting, gain_order, stratified
from ..errors import UserError
from ..providers.base import Message
from ..scheduler import Scheduler
from ..store import NOT_SENT, RowRecord
from .budget import Budget, Meter, Spending
from .correction_rows import CorrectionJob
from .correction_table import gate_inputs, result_table
from .estimate import Estimate, estimate, split


def not_sent(reason: str) -> str:
    return f"{NOT_SENT} ({reason})"


def validation_rows(
    corrector: Corrector,
    valid: pd.DataFrame,
    m: int,
    how: str,
    explicit: bool,
    meter: Meter | None,
    samples: int,
    classes: Classes | None = None,
) -> pd.DataFrame:
    """`m` validation rows, stratified by the model's confidence (`how`: or the first ones); with a budget, as many
    as half of it pays for (picked the same way from the whole split, so that a resume or rerun asking for that many
    gets the same rows), or one line when --gate-rows asks for more than all of it (`classes`: a multiclass
    problem's)."""
    problem = corrector.problem
    base, confidences = (
        gate_inputs(valid, classes) if how == "stratified" and len(valid) else (valid["prediction"], None)
    )
    costs: dict[int, float] = {}

    def pick(k: int) -> list[int]:
        if how == "stratified":
            return stratified(problem, base, k, confidences)
        return list(range(min(k, len(valid))))

    def cost(k: int) -> float:
        for i in pick(k):
            if i not in costs:
                costs[i] = samples * meter.cost(corrector.messages(valid.iloc[i])) if meter is not None else 0.0
        return sum(costs[i] for i in pick(k))

    m = min(m, len(valid))
    if meter is not None and m and cost(m) > (share := meter.budget.amount / (1 if explicit else 2)) + 1e-9:
        budget = meter.budget
        if explicit:
            raise UserError(
                f"--budget {budget.describe()}: the {m} validation rows of --gate-rows cost "
                f"{budget.describe(cost(m))} alone; give a larger budget or fewer --gate-rows"
            )
        low, high = 0, m  # the most rows that fit: cost(low) fits, cost(high) does not
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if cost(mid) <= share + 1e-9 else (low, mid)
        if low == 0:
            raise UserError(
                f"--budget {budget.describe()}: half of it does not pay for one validation row of the gate "
                f"({budget.describe(cost(1))}); give a larger budget, or --no-gate to spend it all on test rows"
            )
        m = low
    return valid.iloc[pick(m)].reset_index(drop=True)


class Selection:
    """A correct run's choice of rows to send: planned before anything is recorded, decided after validation."""

    def __init__(
        self,
        job: CorrectionJob,
        gate: bool,
        selective: bool,
        meter: Meter | None,
        samples: int,
        valid_of: int,
        classes: Classes | None = None,
    ) -> None:
        self.job, self.gate, self.selective, self.meter = job, gate, selective, meter
        self.valid_of = valid_of  # the validation split's rows, of which the gate learns from `job.valid`'s
        self.problem, self.classes = job.corrector.problem, classes
        self.n = len(job.test)
        # the test rows as the gate reads them: base predictions (multiclass: class indices) and confidences
        self.base, self.confidences = gate_inputs(job.test, classes) if self.n else (job.test["prediction"], None)
        self.spending = Spending(meter) if meter is not None else None
        # what each row's first answers are charged (every sample's), against the budget
        self.costs = [samples * meter.cost(job.item(i).messages) for i in range(len(job.rows))] if meter else []

    @property
    def budget(self) -> Budget | None:
        return self.meter.budget if self.meter is not None else None

    @property
    def staged(self) -> bool:
        """Whether the test rows to send are chosen once the validation rows are answered."""
        return (self.gate and self.selective) or self.meter is not None

    @property
    def validation(self) -> range:
        return range(self.n, len(self.job.rows))

    def _fit(self, order: list[int], valid_spent: float) -> list[int]:
        assert self.budget is not None
        return fitting(order, self.costs, self.budget.amount - valid_spent)

    def estimate(self, prompts: list[list[Message]], scheduler: Scheduler, samples: int, max_tokens: int) -> Estimate:
        """What the run spends: every row's first answers (the test rows, at most those that fit the budget once
        the validation rows' are paid), split between validation and test rows when the run is staged."""
        asked = lambda rows: (prompts[i] for i in rows for _ in range(samples))  # noqa: E731
        if not self.staged:
            return estimate(asked(range(len(prompts))), scheduler, max_tokens)
        test = gain_order(self.problem, self.base, self.confidences)
        if self.budget is not None:
            test = self._fit(test, sum(self.costs[i] for i in self.validation))
        v = estimate(asked(self.validation), scheduler, max_tokens)
        t = estimate(asked(sorted(test)), scheduler, max_tokens)
        shown = self.budget.describe() if self.budget is not None else None
        valid = (v, len(self.validation), self.valid_of if self.gate else 0)
        return split(valid, (t, len(test), self.n), shown, self.gate and self.selective)

    def decide(self, stored: list[RowRecord]) -> tuple[list[int], dict[int, str]]:
        """The test rows to send (their positions, the most likely to gain first), and why each other one is not
        sent, from the stored validation rows."""
        candidates = set(range(self.n))
        reasons: dict[int, str] = {}
        if self.gate and self.selective:
            valid = result_table(self.job.valid, stored, self.problem, offset=self.n)
            classes = self.classes
            valid_base, valid_confidences = gate_inputs(valid, classes)
            llm = classes.indices(valid["corrected_prediction"]) if classes else valid["corrected_prediction"]
            label = classes.indices(valid["label"]) if classes else valid["label"]
            gate = choose_gate(self.problem, label, valid_base, llm, valid_confidences)
            applies = gate.applies(self.base, self.confidences)
            candidates = {i for i in candidates if applies[i]}
            reasons = {i: "gate" for i in range(self.n) if i not in candidates}
        order = [i for i in gain_order(self.problem, self.base, self.confidences) if i in candidates]
        if self.budget is None:
            return order, reasons
        valid_spent = sum(charged(r) for r in stored if r.row_index >= self.n)
        send = self._fit(order, valid_spent)
        reasons |= {i: "budget" for i in order[len(send) :]}
        return send, reasons

    def start(self, stored: list[RowRecord], sending: list[int]) -> None:
        """Open the budget's account for a stage: what the stored rows were charged, the first answers of the rows
        about to be sent reserved."""
        if self.spending is not None:
            self.spending.start(sum(charged(r) for r in stored), sum(self.costs[i] for i in sending))

    def unsent_row(self, i: int, reason: str) -> RowRecord:
        """Test row `i`, recorded with nothing sent: its output the base prediction (correction_table.py)."""
        item = self.job.item(i)
        return RowRecord(i, item.sample_id, item.inputs, not_sent(reason), output={"not_sent": reason})


def charged(row: RowRecord) -> float:
    """What a stored row was charged against the run's budget (correction_rows.py)."""
    value = (row.output or {}).get("charged", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0
