"""What a run will spend, before it spends it: requests, prompt tokens, completion tokens, cost, ETA at the quotas."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from ..providers.base import Message
from ..scheduler import Scheduler
from ..scheduler.tokens import chat_prompt_tokens


@dataclass(frozen=True)
class Part:
    """A correct run's spending on one split: the validation rows the gate learns from, or the test rows."""

    rows: int  # rows sent (test: at most, before the gate has chosen)
    of: int  # rows in the split's share of the run
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    cost_max: float | None


@dataclass(frozen=True)
class Estimate:
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    cost_max: float | None  # at the configured prices, if every answer used max_tokens
    eta_s: float | None  # at the selected endpoints' quotas; None when no endpoint has a quota
    binding: str | None  # which quota binds: "requests" or "tokens"
    endpoints: list[str]
    # where each endpoint's quota came from: "config", "learned from headers" or "none" (scheduler/learned.py)
    quota_sources: dict[str, str] = field(default_factory=dict)
    # a correct run: its spending split between validation and test rows, its budget, and whether the gate picks
    # the test rows to send once it has learned on validation (then `test` is the most that can be sent)
    validation: Part | None = None
    test: Part | None = None
    budget: str | None = None
    selective: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def estimate(prompts: Iterable[list[Message]], scheduler: Scheduler, max_tokens: int) -> Estimate:
    """Count every prompt with the first endpoint's tokenizer; spread the work over the endpoints by quota."""
    first = scheduler.endpoints[0]
    requests = prompt_tokens = 0
    for messages in prompts:
        requests += 1
        prompt_tokens += chat_prompt_tokens(messages, first.counter)
    completion = requests * max_tokens
    charged = prompt_tokens + completion  # what quota enforcement charges at admission

    rpm = sum(e.config.rpm or 0 for e in scheduler.endpoints)
    tpm = sum(e.config.tpm or 0 for e in scheduler.endpoints)
    limits = {}
    if rpm:
        limits["requests"] = requests / rpm * 60
    if tpm:
        limits["tokens"] = charged / tpm * 60
    binding = max(limits, key=lambda k: limits[k]) if limits else None

    costs = [e.config.cost(prompt_tokens, completion) for e in scheduler.endpoints]
    known = [c for c in costs if c is not None]
    return Estimate(
        requests=requests,
        prompt_tokens=prompt_tokens,
        max_completion_tokens=completion,
        cost_max=max(known) if known else None,
        eta_s=limits[binding] if binding else None,
        binding=binding,
        endpoints=[e.name for e in scheduler.endpoints],
        quota_sources={e.name: e.quota_source for e in scheduler.endpoints},
    )


def split(
    valid: tuple[Estimate, int, int], test: tuple[Estimate, int, int], budget: str | None, selective: bool
) -> Estimate:
    """One estimate of a correct run from its two parts', each given as (estimate, rows sent, rows it is chosen
    from)."""
    (v, v_rows, v_of), (t, t_rows, t_of) = valid, test

    def part(e: Estimate, rows: int, of: int) -> Part:
        return Part(rows, of, e.requests, e.prompt_tokens, e.max_completion_tokens, e.cost_max)

    costs = [c for c in (v.cost_max, t.cost_max) if c is not None]
    etas = [s for s in (v.eta_s, t.eta_s) if s is not None]
    return Estimate(
        requests=v.requests + t.requests,
        prompt_tokens=v.prompt_tokens + t.prompt_tokens,
        max_completion_tokens=v.max_completion_tokens + t.max_completion_tokens,
        cost_max=sum(costs) if costs else None,
        eta_s=sum(etas) if etas else None,
        binding=t.binding or v.binding,
        endpoints=t.endpoints,
        quota_sources=t.quota_sources,
        validation=part(v, v_rows, v_of) if v_of else None,
        test=part(t, t_rows, t_of),
        budget=budget,
        selective=selective,
    )


def describe_split(e: Estimate) -> str | None:
    """How a correct run's requests split between validation and test rows, and what fits its budget."""
    if e.test is None:
        return None
    v, t = e.validation, e.test
    text = f"validation {v.rows} rows ({v.requests:,} requests), " if v is not None else ""
    text += f"test {t.rows} of {t.of} rows ({t.requests:,} requests)"
    if e.budget is not None:
        text += f" fit the budget of {e.budget}"
    if e.selective and v is not None:
        text += "; test rows the gate would not change are not sent"
    return text


def describe_estimate(e: Estimate) -> str:
    """One line for logs and prompts."""
    text = (
        f"{e.requests:,} requests, {e.prompt_tokens:,} prompt tokens, up to {e.max_completion_tokens:,} "
        f"completion tokens"
    )
    if e.cost_max is not None:
        text += f", at most ${e.cost_max:.4f}"
    if e.eta_s is not None:
        text += f", ETA {e.eta_s:.0f} s at the {e.binding} quota of {', '.join(e.endpoints)}"
    if e.quota_sources:
        text += f"; quota from: {describe_sources(e.quota_sources)}"
    shared = describe_split(e)
    if shared is not None:
        text += f"; {shared}"
    return text


def describe_sources(sources: dict[str, str]) -> str:
    """Where each endpoint's quota came from: "east config, west none"."""
    return ", ".join(f"{name} {source}" for name, source in sources.items())
