"""An LLMCorr run: validate everything, then stream the test split through the corrector into the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct import Corrector, Predictions, classification_metrics, load_predictions, regression_metrics
from ..correct.gate import choose_gate
from ..correct.rounds import LoopOptions
from ..data import check_output_path, write_table
from ..errors import UserError
from ..prompts import load_template
from ..providers import Provider
from ..providers.base import GenParams
from ..scheduler import Scheduler
from ..store import RunRecord, Store
from .correction_rows import correction_rows
from .engine import WorkItem, execute, make_scheduler, recorded, request_timeout
from .estimate import Estimate, describe_estimate, estimate
from .llm import CachedLLM
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
    """The rows a correct run asks about: the test rows (indices 0..n-1), then the validation rows the gate learns
    from (indices n..n+m-1)."""

    def __init__(self, corrector: Corrector, test: pd.DataFrame, valid: pd.DataFrame) -> None:
        self.corrector = corrector
        self.test = test
        self.valid = valid
        self.rows = pd.concat([test, valid], ignore_index=True)
        self._base = self.rows["prediction"].astype(float).tolist()
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

    def order(self, share_prefixes: bool) -> list[int]:
        """Every row's index: in input order, or (`share_prefixes`, for the embedded model's KV cache) with rows
        that show the same shots next to each other, so consecutive prompts share the longest prefix."""
        indices = list(range(len(self.rows)))
        if not share_prefixes:
            return indices
        for i in indices:
            self.item(i)
        return sorted(indices, key=lambda i: (self._shots[i], i))


def _plain(value: Any) -> Any:
    """A cell as a plain Python value: a NumPy scalar's value, a NumPy array's list (a Parquet list column)."""
    if getattr(value, "ndim", 0):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


ConfirmFn = Callable[[Estimate, Scheduler], bool]


def result_table(test: pd.DataFrame, rows: list[dict[str, Any]], problem: str, offset: int = 0) -> pd.DataFrame:
    """The test rows (or, from `offset`, the validation rows) joined with what the store holds for them:
    corrections, responses, tokens."""
    table = test.reset_index(drop=True).copy()
    by_index = {r["row_index"]: r for r in rows}
    corrected, labels, responses, parsed, errors, explanations, tokens = [], [], [], [], [], [], []
    for i, base in enumerate(table["prediction"].astype(float)):
        r = by_index.get(i + offset)
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


def gated(test: pd.DataFrame, valid: pd.DataFrame | None, problem: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The test table with the gate chosen on the validation rows applied, and the metrics: the gated correction's,
    plus the gate (policy and validation evidence) and what the correction would have done ungated."""
    if valid is None:
        return test, compute_metrics(test, problem) if len(test) else {"n": 0}
    gate = choose_gate(problem, valid["label"], valid["prediction"], valid["corrected_prediction"])
    table = test.copy()
    table["llm_prediction"] = table["corrected_prediction"]
    applied = gate.applies(table["prediction"]) & (table["llm_prediction"] != table["prediction"])
    table["corrected_prediction"] = gate.apply(table["prediction"], table["llm_prediction"])
    table["gate_applied"] = applied
    if problem == "classification":
        table["corrected_label"] = (table["corrected_prediction"] >= 0.5).astype(int)
    if not len(table):
        return table, {"n": 0, "gate": gate.to_dict()}
    metrics = compute_metrics(table, problem)
    ungated = compute_metrics(test, problem)
    metrics["gate"] = gate.to_dict() | {"applied_on_test": int(applied.sum())}
    metrics["ungated"] = {"corrected": ungated["corrected"], "flips": ungated["flips"]}
    return table, metrics


@dataclass
class CorrectionPlan:
    """A validated run, ready to go: nothing has been recorded or spent yet."""

    config: Config
    table: Predictions
    corrector: Corrector
    test: pd.DataFrame
    job: _CorrectionJob
    scheduler: Scheduler
    params: GenParams
    estimate: Estimate
    spec: RunSpec
    loop: LoopOptions


def plan_correction(
    predictions: str | Path | pd.DataFrame,
    *,
    task: str | None = None,
    shots: int | str = 3,
    limit: int | None = None,
    seed: int = 0,
    output: str | Path | None = None,
    problem: Literal["auto", "classification", "regression"] = "auto",
    columns: Mapping[str, str] | None = None,
    template: str | Path | None = None,
    max_tokens: int = 64,
    knowledge: str = "random",
    knowledge_from: str = "valid",
    format_retries: int = 1,
    double_check: int = 0,
    change_threshold: float = 0.5,
    samples: int = 1,
    temperature: float | None = None,
    gate: bool = True,
    gate_rows: int | None = None,
    describe_molecules: bool = False,
    endpoints: list[str] | None = None,
    provider: Provider | EndpointConfig | None = None,
    config: Config | None = None,
) -> CorrectionPlan:
    """Check everything the user can get wrong and estimate the spend, before any run is recorded or token spent."""
    config = config or Config.load()
    for name, value in (("format_retries", format_retries), ("double_check", double_check)):
        if value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    if samples < 1:
        raise UserError("--samples must be >= 1")
    loop = LoopOptions(format_retries, double_check, change_threshold, samples)
    table = load_predictions(predictions, columns=columns, problem=problem)
    if output is not None:
        check_output_path(output)
    corrector = Corrector(
        table,
        task=task,
        shots=shots,
        seed=seed,
        template=template,
        knowledge=knowledge,
        knowledge_from=knowledge_from,
        describe_molecules=describe_molecules,
    )
    test = table.split("test").reset_index(drop=True)
    if limit is not None:
        test = test.head(max(0, limit))
    valid = table.split("valid").reset_index(drop=True)
    # the gate learns from as many validation rows as there are test rows (at least 20), unless told otherwise
    valid = valid.head(gate_rows if gate_rows is not None else max(len(test), 20)) if gate else valid.head(0)
    job = _CorrectionJob(corrector, test, valid)
    scheduler = make_scheduler(config, endpoints, provider)
    if temperature is None:
        temperature = 0.7 if samples > 1 else 0.0  # several samples at temperature 0 would all be the same answer
    params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    prompts = [job.item(i).messages for i in range(len(job.rows))]
    planned = estimate((p for p in prompts for _ in range(samples)), scheduler, max_tokens)
    spec = RunSpec(
        kind="correct",
        data=table.source,
        data_sha256=data_sha256(predictions),
        template=str(corrector.template.path),
        template_sha256=corrector.template.sha256,
        endpoints=[
            e.provider.describe() | {"name": e.name, "rpm": e.config.rpm, "tpm": e.config.tpm}
            for e in scheduler.endpoints
        ],
        params=params.to_dict(),
        options={
            "endpoint_configs": [e.config.model_dump(mode="json") for e in scheduler.endpoints],
            "task": corrector.task,
            "shots": shots,
            "limit": limit,
            "seed": seed,
            "problem": table.problem,
            "columns": table.columns,
            "knowledge": knowledge,
            "knowledge_from": knowledge_from,
            "similarity": corrector.knowledge.similarity,
            "loop": loop.to_dict(),
            "gate": gate,
            "gate_rows": len(valid) if gate else 0,
            "describe_molecules": describe_molecules,
        },
    )
    return CorrectionPlan(config, table, corrector, test, job, scheduler, params, planned, spec, loop)


async def estimate_async(predictions: str | Path | pd.DataFrame, **options: Any) -> Estimate:
    """What `correct` would spend with these arguments; nothing is recorded or sent."""
    plan = plan_correction(predictions, **options)
    await plan.scheduler.aclose()
    return plan.estimate


async def correct_async(
    predictions: str | Path | pd.DataFrame,
    *,
    name: str | None = None,
    output: str | Path | None = None,
    progress: bool = False,
    confirm: ConfirmFn | None = None,
    cache: bool = True,
    **options: Any,
) -> CorrectionResult:
    """Correct the test split of a predictions table with an LLM (LLMCorr); see `correct` for the arguments."""
    started = time.perf_counter()
    plan = plan_correction(predictions, output=output, **options)
    log.info(
        "problem: %s; task: %r; %d test rows (+%d validation rows for the gate); %d shots (%s) from %d rows; "
        "endpoints: %s",
        plan.table.problem,
        plan.corrector.task,
        len(plan.test),
        len(plan.job.valid),
        plan.corrector.shots,
        plan.corrector.knowledge.similarity or plan.corrector.knowledge.strategy,
        len(plan.corrector.pool),
        ", ".join(f"{e.name} ({e.config.kind}, concurrency {e.gate.limit})" for e in plan.scheduler.endpoints),
    )
    log.info("estimate: %s", describe_estimate(plan.estimate))
    with Store(plan.config.store_path) as store:
        store.check_name_free(name)
        if confirm is not None and not confirm(plan.estimate, plan.scheduler):
            await plan.scheduler.aclose()
            raise UserError("run cancelled before it started; nothing was spent")
        spec = plan.spec.to_dict() | {"cache": cache}
        rows_total = len(plan.job.rows)
        run_id = store.create_run("correct", spec, rows_total, name=name, estimate=plan.estimate.to_dict())
        store.set_output_path(run_id, output)
        return await _run(plan, store, run_id, set(), output, progress, cache, started)


def recorded_table(store: Store, record: RunRecord) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A recorded correct run's test rows as `--output` writes them (the gate applied) and its metrics, rebuilt
    from the store alone (for reports)."""
    if record.kind != "correct":
        raise UserError(f"run {record.label} is a {record.kind} run; reports are for correct runs")
    rows = store.rows(record.id)
    problem = record.spec.get("options", {}).get("problem", "classification")
    frames = {
        split: pd.DataFrame([r["inputs"] for r in rows if (r["inputs"] or {}).get("split") == split])
        for split in ("test", "valid")
    }
    test = result_table(frames["test"], rows, problem) if len(frames["test"]) else frames["test"]
    valid = None
    if record.spec.get("options", {}).get("gate") and len(frames["valid"]):
        valid = result_table(frames["valid"], rows, problem, offset=len(frames["test"]))
    if not len(test):
        return test, record.metrics or {"n": 0}
    table, metrics = gated(test, valid, problem)
    return table, metrics


def recorded_options(
    record: RunRecord,
    config: Config,
    predictions: str | Path | pd.DataFrame | None = None,
    provider: Provider | EndpointConfig | None = None,
) -> tuple[str | Path | pd.DataFrame, dict[str, Any]]:
    """The data and `plan_correction` options that re-create a recorded correct run, checked against its hashes."""
    spec = record.spec
    if record.kind != "correct":
        raise UserError(f"run {record.label} is a {record.kind} run; only correct runs can be resumed or rerun")
    data = predictions if predictions is not None else spec["data"]
    if isinstance(data, str) and data == "DataFrame":
        raise UserError(f"run {record.label} was made from a DataFrame: pass it again (predictions=df)")
    if data_sha256(data) != spec["data_sha256"]:
        raise UserError(f"run {record.label}: the data has changed since the run was made ({data})")
    opts = spec["options"]
    # the run's own endpoints, as recorded: names, kinds, quotas, key variable names (never keys)
    recorded = [EndpointConfig(**e) for e in opts.get("endpoint_configs", [])]
    return data, {
        "task": opts["task"],
        "shots": opts["shots"],
        "limit": opts["limit"],
        "seed": opts["seed"],
        "problem": opts["problem"],
        "columns": {k: v for k, v in opts["columns"].items() if k != v},
        "template": spec["template"],
        "max_tokens": spec["params"]["max_tokens"],
        "temperature": spec["params"].get("temperature", 0.0),
        "knowledge": opts.get("knowledge", "random"),
        "knowledge_from": opts.get("knowledge_from", "valid"),
        **opts.get("loop", {}),
        "gate": opts.get("gate", False),
        "gate_rows": opts.get("gate_rows"),
        "describe_molecules": opts.get("describe_molecules", False),
        "provider": provider,
        "endpoints": [e.name for e in recorded] or None,
        "config": config.model_copy(update={"endpoints": recorded}) if recorded else config,
    }


def _check_template(plan: CorrectionPlan, record: RunRecord) -> None:
    if plan.corrector.template.sha256 != record.spec["template_sha256"]:
        raise UserError(f"run {record.label}: the prompt template {record.spec['template']} has changed")


async def resume_async(
    run: str,
    *,
    predictions: str | Path | pd.DataFrame | None = None,
    output: str | Path | None = None,
    progress: bool = False,
    config: Config | None = None,
    provider: Provider | EndpointConfig | None = None,
) -> CorrectionResult:
    """Continue a stopped run: its finished rows are kept (no token spent on them again), failed rows are retried,
    missing rows are run. The data and the template must be the same bytes as before (checked by hash)."""
    started = time.perf_counter()
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
        data, options = recorded_options(record, config, predictions, provider)
        plan = plan_correction(data, output=output, **options)
        _check_template(plan, record)
        done = store.reopen_run(record.id)
        if output is not None:
            store.set_output_path(record.id, output)
        log.info(
            "resuming %s: %d of %d rows kept, %d to run",
            record.label,
            len(done),
            len(plan.job.rows),
            len(plan.job.rows) - len(done),
        )
        cache = bool(record.spec.get("cache", True))
        return await _run(plan, store, record.id, done, output, progress, cache, started)


async def rerun_async(
    run: str,
    *,
    name: str | None = None,
    predictions: str | Path | pd.DataFrame | None = None,
    output: str | Path | None = None,
    progress: bool = False,
    config: Config | None = None,
    provider: Provider | EndpointConfig | None = None,
) -> CorrectionResult:
    """Make a recorded run again as a new run, from its spec: free where its answers are cached."""
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
    data, options = recorded_options(record, config, predictions, provider)
    if load_template(options["template"]).sha256 != record.spec["template_sha256"]:
        raise UserError(f"run {record.label}: the prompt template {record.spec['template']} has changed")
    return await correct_async(data, name=name, output=output, progress=progress, **options)


async def _run(
    plan: CorrectionPlan,
    store: Store,
    run_id: str,
    skip: set[int],
    output: str | Path | None,
    progress: bool,
    cache: bool,
    started: float,
) -> CorrectionResult:
    """Execute a recorded run's remaining rows, then finish it: completed, cancelled, interrupted or failed."""
    scheduler, test, table = plan.scheduler, plan.test, plan.table
    local = all(e.config.kind == "local" for e in scheduler.endpoints)  # one model, one KV cache: share prefixes
    items = (plan.job.item(i) for i in plan.job.order(share_prefixes=local) if i not in skip)
    process = correction_rows(plan.job, CachedLLM(scheduler, store, cache), plan.params, plan.loop)
    hint = f"; resume with `llmcorr runs resume {run_id}`"
    async with recorded(store, run_id, scheduler, plan.config, "correct", hint=hint):
        with row_progress(len(plan.job.rows) - len(skip), f"correcting {run_id}", progress, scheduler) as on_row:
            width = scheduler.max_concurrency * 2
            await execute(items, process, store, run_id, width, on_row, request_timeout(scheduler))
        rows = store.rows(run_id)
        result = result_table(test, rows, table.problem)
        valid = (
            result_table(plan.job.valid, rows, table.problem, offset=len(test)) if plan.spec.options["gate"] else None
        )
        result, metrics = gated(result, valid, table.problem)
    store.finish_run(run_id, "completed", metrics=metrics, usage=scheduler.stats())
    record = store.get_run(run_id)
    if output is not None:
        write_table(result, output)
    return CorrectionResult(
        run_id=run_id,
        name=record.name,
        problem=table.problem,
        table=result,
        metrics=metrics,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        wall_s=time.perf_counter() - started,
    )
