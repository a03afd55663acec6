"""An LLMCorr run: validate everything, then stream the test split through the corrector into the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..config import Config, ProviderConfig
from ..correct import Corrector, classification_metrics, load_predictions, regression_metrics, write_table
from ..correct.data import check_output_path
from ..providers import Provider, make_provider
from ..providers.base import GenParams
from ..scheduler import Scheduler
from ..store import Store
from .engine import WorkItem, execute
from .progress import row_progress
from .spec import RunSpec, data_sha256

log = logging.getLogger("llmcorr")


@dataclass
class CorrectionResult:
    """The outcome of `llmcorr.correct`: the corrected test rows, metrics before/after, and the run's id."""

    run_id: str
    name: str | None
    problem: str
    table: pd.DataFrame
    metrics: dict[str, Any]
    input_tokens: int
    output_tokens: int
    wall_s: float

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class _CorrectionJob:
    def __init__(self, corrector: Corrector, test: pd.DataFrame) -> None:
        self.corrector = corrector
        self.test = test
        self._base = dict(zip(range(len(test)), test["prediction"].astype(float), strict=True))

    def items(self, first: WorkItem) -> Iterator[WorkItem]:
        yield first
        for i in range(1, len(self.test)):
            yield self.item(i)

    def item(self, i: int) -> WorkItem:
        row = self.test.iloc[i]
        inputs = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        return WorkItem(index=i, sample_id=str(row["id"]), inputs=inputs, messages=self.corrector.messages(row))

    def interpret(self, item: WorkItem, text: str) -> tuple[dict[str, Any], str | None]:
        correction = self.corrector.interpret(self._base[item.index], text)
        return correction.output, correction.parsed.error


def _resolve_provider(provider: Provider | ProviderConfig | None, config: Config) -> Provider:
    if isinstance(provider, Provider):
        return provider
    return make_provider(provider or config.provider)


def result_table(test: pd.DataFrame, rows: list[dict[str, Any]], problem: str) -> pd.DataFrame:
    """The test rows joined with what the store holds for them: corrections, responses, tokens."""
    table = test.reset_index(drop=True).copy()
    by_index = {r["row_index"]: r for r in rows}
    corrected, labels, responses, parsed, errors, explanations, tokens = [], [], [], [], [], [], []
    for i, base in enumerate(table["prediction"].astype(float)):
        r = by_index.get(i)
        out = (r or {}).get("output") or {}
        corrected.append(out.get("corrected_prediction", base))
        labels.append(out.get("corrected_label", int(base >= 0.5)))
        responses.append(r["response"] if r else None)
        parsed.append(bool(r and r["status"] == "ok"))
        errors.append(r["error"] if r else "not processed")
        explanations.append(out.get("explanation"))
        tokens.append((r["input_tokens"] or 0) + (r["output_tokens"] or 0) if r else 0)
    table["corrected_prediction"] = corrected
    if problem == "classification":
        table["corrected_label"] = labels
    table["llm_response"] = responses
    table["parsed"] = parsed
    table["parse_error"] = errors
    table["explanation"] = explanations
    table["tokens"] = tokens
    return table


def compute_metrics(table: pd.DataFrame, problem: str) -> dict[str, Any]:
    fn = classification_metrics if problem == "classification" else regression_metrics
    metrics = fn(table["label"], table["prediction"], table["corrected_prediction"])
    metrics["parsed"] = int(table["parsed"].sum())
    return metrics


async def correct_async(
    predictions: str | Path | pd.DataFrame,
    *,
    task: str | None = None,
    shots: int = 3,
    limit: int | None = None,
    seed: int = 0,
    name: str | None = None,
    output: str | Path | None = None,
    problem: Literal["auto", "classification", "regression"] = "auto",
    columns: Mapping[str, str] | None = None,
    template: str | Path | None = None,
    max_tokens: int = 64,
    provider: Provider | ProviderConfig | None = None,
    config: Config | None = None,
    progress: bool = False,
) -> CorrectionResult:
    """Correct the test split of a predictions table with an LLM (LLMCorr); see `correct` for the arguments."""
    started = time.perf_counter()
    config = config or Config.load()
    if shots < 0:
        raise ValueError("shots must be >= 0")
    # Everything the user can get wrong is checked here, before a store row is written or a token is spent.
    table = load_predictions(predictions, columns=columns, problem=problem)
    if output is not None:
        check_output_path(output)
    corrector = Corrector(table, task=task, shots=shots, seed=seed, template=template)
    test = table.split("test").reset_index(drop=True)
    if limit is not None:
        test = test.head(max(0, limit))
    job = _CorrectionJob(corrector, test)
    first = job.item(0) if len(test) else None
    llm = _resolve_provider(provider, config)
    params = GenParams(max_tokens=max_tokens, temperature=0.0, seed=seed)
    spec = RunSpec(
        kind="correct",
        data=table.source,
        data_sha256=data_sha256(predictions),
        template=str(corrector.template.path),
        template_sha256=corrector.template.sha256,
        provider=llm.describe(),
        params=params.to_dict(),
        options={
            "task": corrector.task,
            "shots": shots,
            "limit": limit,
            "seed": seed,
            "problem": table.problem,
            "columns": table.columns,
            "knowledge": "random",
            "knowledge_from": "valid",
        },
    )
    scheduler = Scheduler(llm)
    log.info(
        "problem: %s; task: %r; %d test rows; %d shots from %d valid rows; concurrency %d (%s)",
        table.problem,
        corrector.task,
        len(test),
        shots,
        len(corrector.pool),
        scheduler.max_concurrency,
        llm.kind,
    )

    with Store(config.store_path) as store:
        store.check_name_free(name)
        run_id = store.create_run("correct", spec.to_dict(), rows_total=len(test), name=name)
        try:
            if first is not None:
                with row_progress(len(test), f"correcting {run_id}", enabled=progress) as on_row:
                    await execute(job, job.items(first), scheduler, store, run_id, params, on_row=on_row)
            result = result_table(test, store.rows(run_id), table.problem)
            metrics = compute_metrics(result, table.problem) if len(result) else {"n": 0}
        except (KeyboardInterrupt, asyncio.CancelledError):
            store.finish_run(run_id, "interrupted", error="stopped by the user")
            raise
        except BaseException as exc:
            store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            await llm.aclose()
        store.finish_run(run_id, "completed", metrics=metrics)
        record = store.get_run(run_id)
    if output is not None:
        write_table(result, output)
    return CorrectionResult(
        run_id=run_id,
        name=name,
        problem=table.problem,
        table=result,
        metrics=metrics,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        wall_s=time.perf_counter() - started,
    )
