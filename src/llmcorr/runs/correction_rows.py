"""One test row through the LLMCorr loop: answer → format retry → double-check, for each self-consistency sample,
then the vote. Every LLM call goes through the cached client (so a rerun is free) and every round is a traced step."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..correct.corrector import Corrector, correction_output, interpret
from ..correct.rounds import (
    LoopOptions,
    Round,
    Sample,
    combine,
    double_check_request,
    format_reminder,
    strong_change,
)
from ..errors import FatalProviderError, ProviderError
from ..providers.base import GenParams, Message
from ..store import RowRecord
from ..tracing import step_span
from .budget import Spending
from .engine import Process, WorkItem
from .llm import CachedLLM


class CorrectionJob:
    """The rows a correct run asks about: the test rows (indices 0..n-1), then the validation rows the gate learns
    from (indices n..n+m-1)."""

    def __init__(self, corrector: Corrector, test: pd.DataFrame, valid: pd.DataFrame) -> None:
        self.corrector = corrector
        self.test = test
        self.valid = valid
        self.rows = pd.concat([test, valid], ignore_index=True)
        self._base = corrector.base_values(self.rows)
        self._items: dict[int, WorkItem] = {}  # rendered once: the estimate and the run share them
        self._shots: dict[int, tuple[str, ...]] = {}  # the ids of each row's knowledge rows

    def item(self, i: int) -> WorkItem:
        cached = self._items.get(i)
        if cached is None:
            row = self.rows.iloc[i]
            knowledge = self.corrector.knowledge_for(row)
            self._shots[i] = tuple(knowledge["id"].astype(str))
            inputs = {str(k): _plain(v) for k, v in row.items()}
            messages = self.corrector.messages(row, knowledge)
            cached = self._items[i] = WorkItem(index=i, sample_id=str(row["id"]), inputs=inputs, messages=messages)
        return cached

    def base(self, index: int) -> float:
        return self._base[index]

    def answering(self, loop: LoopOptions) -> CorrectionRows:
        """What answering these rows takes (picklable: for Ray workers)."""
        return CorrectionRows(self.corrector.problem, tuple(self._base), loop, self.corrector.classes)

    def order(self, share_prefixes: bool, indices: Iterable[int] | None = None) -> list[int]:
        """Row indices (default: every row's): in the order given, or (`share_prefixes`, for the embedded model's KV
        cache) with rows that show the same shots next to each other, so consecutive prompts share the longest
        prefix."""
        chosen = list(range(len(self.rows)) if indices is None else indices)
        if not share_prefixes:
            return chosen
        for i in chosen:
            self.item(i)
        return sorted(chosen, key=lambda i: (self._shots[i], i))


def _plain(value: Any) -> Any:
    """A cell as a plain Python value: a NumPy scalar's value, a NumPy array's list (a Parquet list column)."""
    if getattr(value, "ndim", 0):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class CorrectionRows:
    """What answering a correct run's rows takes, once their prompts are rendered: the problem, each row's base
    prediction (multiclass: its class's index in `classes`), the loop and a multiclass problem's classes. Small and
    picklable: the driver renders the prompts, a Ray worker answers them."""

    problem: str
    bases: tuple[float, ...]
    loop: LoopOptions
    classes: tuple[int | str, ...] = ()

    def base(self, index: int) -> float:
        return self.bases[index]


def correction_rows(
    rows: CorrectionRows, llm: CachedLLM, params: GenParams, spending: Spending | None = None
) -> Process:
    """The engine's processor for a correct run; with `spending` (a budget, budget.py), each row records what it was
    charged, and a round beyond the first answers is asked only if it fits."""
    problem, loop, classes = rows.problem, rows.loop, rows.classes
    names = tuple(str(c) for c in classes)

    async def process(item: WorkItem) -> RowRecord:
        base = rows.base(item.index)
        usage = {"input_tokens": 0, "output_tokens": 0, "attempts": 0, "calls": 0, "cached": 0, "latency_ms": 0.0}
        endpoint: str | None = None
        charged = 0.0
        held_back: list[str] = []  # rounds the budget did not pay for

        def affords(messages: list[Any], kind: str) -> bool:
            nonlocal charged
            if spending is None:
                return True
            cost = spending.first(messages) if kind == "answer" else spending.extra(messages)
            if cost is None:
                held_back.append(kind)
                return False
            charged += cost
            return True

        async def ask(messages: list[Any], sample: int, kind: str) -> Round:
            nonlocal endpoint
            seed = params.seed + sample if params.seed is not None else None
            sample_params = dataclasses.replace(params, seed=seed) if sample else params
            with step_span(kind, {"llmcorr.sample": sample}) as span:
                answer = await llm.complete(messages, sample_params, sample)
                correction = interpret(problem, base, answer.text, classes)
                if span is not None:
                    span.set_attribute("llmcorr.parsed", correction.parsed.ok)
            for key in ("input_tokens", "output_tokens", "attempts", "latency_ms"):
                usage[key] += getattr(answer, key)
            usage["calls"] += 1
            usage["cached"] += answer.cached
            endpoint = answer.endpoint or endpoint
            parsed = correction.parsed.ok
            return Round(kind, answer.text, parsed, correction.corrected if parsed else None, answer.key)

        samples: list[Sample] = []
        try:
            for s in range(loop.samples):
                sample, messages = Sample(), list(item.messages)
                affords(messages, "answer")
                sample.rounds.append(await ask(messages, s, "answer"))
                retries = checks = 0
                while True:
                    last, kind, more = sample.final, "", list[Message]()
                    if not last.parsed and retries < loop.format_retries:
                        retries, kind = retries + 1, "format_retry"
                        more = format_reminder(problem, last.text, names)
                    elif (
                        last.parsed
                        and last.corrected is not None
                        and checks < loop.double_check
                        and strong_change(problem, base, last.corrected, loop.change_threshold)
                    ):
                        checks, kind = checks + 1, "double_check"
                        more = double_check_request(problem, last.text, base, names)
                    if not kind or not affords(messages + more, kind):
                        break
                    messages += more
                    sample.rounds.append(await ask(messages, s, kind))
                samples.append(sample)
        except FatalProviderError:
            raise
        except ProviderError as exc:
            prompt = [m.to_dict() for m in item.messages]
            spent = {"charged": charged} if spending is not None else None
            return RowRecord(
                item.index, item.sample_id, item.inputs, "error", prompt=prompt, error=str(exc), output=spent
            )

        with step_span("vote" if loop.samples > 1 else "decide") as span:
            corrected, vote = combine(problem, base, samples)
            if span is not None:
                span.set_attributes({f"llmcorr.{k}": v for k, v in vote.items()})
        finals = [s.final for s in samples]
        parsed = [r for r in finals if r.parsed and r.corrected is not None]
        if problem == "classification":  # explain the decision with an answer that made it
            parsed = [r for r in parsed if (r.corrected >= 0.5) == (corrected >= 0.5)] or parsed  # type: ignore[operator]
        elif problem == "multiclass":
            parsed = [r for r in parsed if r.corrected == corrected] or parsed
        chosen = (parsed or finals)[0]
        reading = interpret(problem, base, chosen.text, classes)
        output = correction_output(problem, corrected, reading.parsed.explanation, classes)
        if len(samples) > 1 or any(len(s.rounds) > 1 for s in samples):
            output["rounds"] = [[{"kind": r.kind, "text": r.text} for r in s.rounds] for s in samples]
            output.update(vote)
        if spending is not None:
            output["charged"] = charged
            if held_back:
                output["not_asked"] = held_back  # rounds not sent: the budget did not pay for them
        parsed_any = any(r.parsed for r in finals)
        return RowRecord(
            item.index,
            item.sample_id,
            item.inputs,
            "ok" if parsed_any else "unparsed",
            prompt=[m.to_dict() for m in item.messages],
            endpoint=endpoint,
            response=chosen.text,
            response_key=chosen.key,
            output=output,
            error=None if parsed_any else reading.parsed.error,
            input_tokens=int(usage["input_tokens"]),
            output_tokens=int(usage["output_tokens"]),
            duration_ms=float(usage["latency_ms"]),
            attempts=int(usage["attempts"]),
            cached=usage["calls"] > 0 and usage["cached"] == usage["calls"],
        )

    return process
