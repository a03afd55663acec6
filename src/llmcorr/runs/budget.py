"""A correct run's `--budget`: in requests (`500`, `1.5k`), tokens (`2M-tokens`) or money at the endpoints'
configured prices (`3usd`, `$3`), and what each LLM call is charged against it.

A call is charged what it can cost at most, known before it is sent: one request; its prompt tokens (counted as
the estimate counts them) plus `max_tokens`; those tokens at the highest configured price among the run's endpoints.
The same charge whether the answer comes from the server or from the response cache, so a rerun selects the same
rows (and costs nothing where its answers are cached), and the run never spends more than its budget.

`Spending` keeps the account while rows are answered: the first answer of each planned row was reserved when the row
was chosen (correction_select.py), so it always fits; a format retry or a double-check is asked only if it fits in
what is left beside those reservations, else the row keeps the answer it has.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import UserError
from ..providers.base import Message
from ..scheduler import Scheduler
from ..scheduler.tokens import chat_prompt_tokens

Unit = Literal["requests", "tokens", "usd"]
_MULTIPLIERS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_BUDGET = re.compile(
    r"^\s*(?P<dollar>\$)?\s*(?P<amount>\d+(?:\.\d*)?|\.\d+)\s*(?P<mult>[kmg]?)\s*[-_ ]?\s*"
    r"(?P<unit>requests?|reqs?|tokens?|usd|\$)?\s*$",
    re.IGNORECASE,
)
_EXPECTED = "expected requests (500, 1.5k), tokens (2M-tokens) or dollars at the configured prices (3usd)"


class Budget(BaseModel):
    """What a run may spend at most, validated."""

    model_config = ConfigDict(frozen=True)

    amount: float
    unit: Unit

    def describe(self, amount: float | None = None) -> str:
        """`20 requests`, `2,000,000 tokens`, `$3.0000` (of `amount`, default the budget's own)."""
        value = self.amount if amount is None else amount
        if self.unit == "usd":
            return f"${value:,.4f}"
        return f"{value:,.0f} {self.unit[:-1] if value == 1 else self.unit}"


def parse_budget(text: str | int | float) -> Budget:
    """`500` / `500-requests` → 500 requests, `2M-tokens` → 2,000,000 tokens, `3usd` / `$3` → 3 dollars; anything
    else, or an amount that is not positive, is one line (exit 2)."""
    if isinstance(text, bool):
        raise UserError(f"--budget {text!r}: {_EXPECTED}")
    if isinstance(text, int | float):
        text = str(text)
    found = _BUDGET.match(text)
    if found is None:
        raise UserError(f"--budget {text!r}: {_EXPECTED}")
    amount = float(found["amount"]) * _MULTIPLIERS[found["mult"].lower()]
    word = (found["unit"] or "").lower()
    unit: Unit = (
        "usd" if found["dollar"] or word in ("usd", "$") else "tokens" if word.startswith("tok") else "requests"
    )
    if found["dollar"] and word not in ("", "usd", "$"):
        raise UserError(f"--budget {text!r}: {_EXPECTED}")
    if amount <= 0:
        raise UserError(f"--budget {text!r}: must be more than 0")
    if unit != "usd" and amount != int(amount):
        raise UserError(f"--budget {text!r}: {unit} come whole")
    return Budget(amount=amount, unit=unit)


class Meter:
    """What one call is charged against a budget (see the module docstring)."""

    def __init__(self, budget: Budget, scheduler: Scheduler, max_tokens: int) -> None:
        self.budget, self.max_tokens = budget, max_tokens
        self.counter = scheduler.endpoints[0].counter
        self.configs = [e.config for e in scheduler.endpoints]
        if budget.unit == "usd":
            unpriced = [c.name for c in self.configs if c.price_in is None and c.price_out is None]
            if unpriced:
                raise UserError(
                    f"--budget {budget.describe()}: endpoint {unpriced[0]} has no price_in/price_out in llmcorr.toml; "
                    "give its prices, or a budget in requests or tokens"
                )

    def cost(self, messages: list[Message]) -> float:
        if self.budget.unit == "requests":
            return 1.0
        tokens = chat_prompt_tokens(messages, self.counter)
        if self.budget.unit == "tokens":
            return float(tokens + self.max_tokens)
        return max(c.cost(tokens, self.max_tokens) or 0.0 for c in self.configs)


class Spending:
    """The budget's account during a run: spent (charged to rows), and reserved for planned rows' first answers."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.limit = meter.budget.amount
        self.spent = 0.0
        self.reserved = 0.0

    def start(self, spent: float, reserved: float) -> None:
        """What the rows the store keeps were charged, and the first answers of the rows about to be sent."""
        self.spent, self.reserved = spent, reserved

    def first(self, messages: list[Message]) -> float:
        """Charge a planned row's first answer (reserved when the row was chosen)."""
        cost = self.meter.cost(messages)
        self.reserved = max(0.0, self.reserved - cost)
        self.spent += cost
        return cost

    def extra(self, messages: list[Message]) -> float | None:
        """Charge one more round (a format retry, a double-check) if it fits beside the reservations; None if not."""
        cost = self.meter.cost(messages)
        if self.spent + self.reserved + cost > self.limit + 1e-9:
            return None
        self.spent += cost
        return cost
