"""An LLMCorr run: validate everything, then stream the test split through the corrector into the store."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct import Corrector, Predictions, load_predictions
from ..correct.rounds import LoopOptions
from ..data import write_table
from ..errors import UserError
from ..prompts import load_template
from ..providers import Provider
from ..providers.base import GenParams
from ..scheduler import Scheduler, describe_endpoints
from ..store import RunRecord, Store
from .correction_rows import CorrectionJob, correction_rows
from .correction_spec import recorded_options
from .correction_table import gated, integer_columns, keep_integers, recorded_table, result_table
from .engine import execute, make_scheduler, recorded, request_timeout
from .estimate import Estimate, describe_estimate, estimate
from .llm import CachedLLM
from .outputs import check_output, claim_output, completed
from .progress import row_progress
from .ray_executor import check_endpoints, check_executor, execute_ray
from .ray_worker import make_recipe
from .spec import (
    ConfirmFn,
    RunSpec,
    absolute,
    config_source,
    data_sha256,
    endpoint_records,
    recorded_output,
)

log = logging.getLogger("llmcorr")
__all__ = ["ConfirmFn", "CorrectionPlan", "CorrectionResult", "correct_async", "plan_correction", "recorded_table"]


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


@dataclass
class CorrectionPlan:
    """A validated run, ready to go: nothing has been recorded or spent yet."""

    config: Config
    table: Predictions
    corrector: Corrector
    test: pd.DataFrame
    job: CorrectionJob
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
    if output is not None:  # an output the run reads, or another run writes, or cannot be written: now
        with Store(config.store_path) as store:
            data = predictions if isinstance(predictions, str | Path) else None
            check_output(output, {"data file": data, "prompt template": template}, store)
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
    job = CorrectionJob(corrector, test, valid)
    scheduler = make_scheduler(config, endpoints, provider)
    if temperature is None:
        temperature = 0.7 if samples > 1 else 0.0  # several samples at temperature 0 would all be the same answer
    params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    prompts = [job.item(i).messages for i in range(len(job.rows))]
    planned = estimate((p for p in prompts for _ in range(samples)), scheduler, max_tokens)
    spec = RunSpec(
        kind="correct",
        data=absolute(table.source) if table.source != "DataFrame" else table.source,
        data_sha256=data_sha256(predictions),
        template=absolute(corrector.template.path),
        template_sha256=corrector.template.sha256,
        endpoints=[
            e.provider.describe() | {"name": e.name, "rpm": e.config.rpm, "tpm": e.config.tpm}
            for e in scheduler.endpoints
        ],
        params=params.to_dict(),
        options={
            "endpoint_configs": endpoint_records(scheduler),
            "config": config_source(config),
            "int_columns": integer_columns(predictions, table.columns),
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
    executor: str = "local",
    ray_address: str | None = None,
    **options: Any,
) -> CorrectionResult:
    """Correct the test split of a predictions table with an LLM (LLMCorr); see `correct` for the arguments."""
    started = time.perf_counter()
    check_executor(executor)
    plan = plan_correction(predictions, output=output, **options)
    if executor == "ray":
        check_endpoints(plan.scheduler)
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
        describe_endpoints(plan.scheduler.endpoints),
    )
    log.info("estimate: %s", describe_estimate(plan.estimate))
    with Store(plan.config.store_path) as store:
        store.check_name_free(name)
        if confirm is not None and not confirm(plan.estimate, plan.scheduler):
            await plan.scheduler.aclose()
            raise UserError("run cancelled before it started; nothing was spent")
        spec = plan.spec.to_dict() | {"cache": cache}
        if executor != "local":
            spec["options"]["executor"] = executor  # `runs show` says how it ran; a resume runs locally
        rows_total = len(plan.job.rows)
        run_id = store.create_run("correct", spec, rows_total, name=name, estimate=plan.estimate.to_dict())
        claim_output(store, run_id, output)
        return await _run(plan, store, run_id, set(), output, progress, cache, started, executor, ray_address)


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
    template: str | Path | None = None,
    skip_failed: bool = False,
) -> CorrectionResult:
    """Continue a stopped run: its finished rows are kept (no token spent on them again), failed rows are retried
    (`skip_failed`: kept as they are), missing rows are run. The data and the template must be the same bytes as
    before (checked by hash). The output goes to `output`, else to the file the run was writing."""
    started = time.perf_counter()
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
        data, options = recorded_options(record, config, predictions, provider, template)
        output = output if output is not None else recorded_output(record)
        plan = plan_correction(data, output=output, **options)
        _check_template(plan, record)
        if output is not None:
            store.set_output_path(record.id, output)  # claimed first: a file another run writes stops this here
        done = store.reopen_run(record.id, retry_failed=not skip_failed)
        log.info(
            "resuming %s: %d of %d rows kept, %d to run; endpoints: %s",
            record.label,
            len(done),
            len(plan.job.rows),
            len(plan.job.rows) - len(done),
            describe_endpoints(plan.scheduler.endpoints),
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
    template: str | Path | None = None,
) -> CorrectionResult:
    """Make a recorded run again as a new run, from its spec: free where its answers are cached."""
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
    data, options = recorded_options(record, config, predictions, provider, template)
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
    executor: str = "local",
    ray_address: str | None = None,
) -> CorrectionResult:
    """Execute a recorded run's remaining rows (here, or on Ray), then finish it: completed, cancelled, interrupted
    or failed."""
    scheduler, test, table = plan.scheduler, plan.test, plan.table
    shared = all(e.config.provider_kind.shares_kv_cache for e in scheduler.endpoints)  # one KV cache: share prefixes
    items = (plan.job.item(i) for i in plan.job.order(share_prefixes=shared) if i not in skip)
    answering = plan.job.answering(plan.loop)
    hint = f"; resume with `llmcorr runs resume {run_id}`"
    try:
        async with recorded(store, run_id, scheduler, plan.config, "correct", hint=hint):
            with row_progress(len(plan.job.rows) - len(skip), f"correcting {run_id}", progress, scheduler) as on_row:
                width = scheduler.max_concurrency * 2
                if executor == "ray":
                    recipe = make_recipe(scheduler, store, plan.params, cache, width, correction=answering)
                    timeout = request_timeout(scheduler)
                    await execute_ray(items, recipe, store, run_id, scheduler, on_row, timeout, address=ray_address)
                else:
                    process = correction_rows(answering, CachedLLM(scheduler, store, cache), plan.params)
                    await execute(items, process, store, run_id, width, on_row, request_timeout(scheduler))
            rows = store.rows(run_id)
            result = result_table(test, rows, table.problem)
            valid = (
                result_table(plan.job.valid, rows, table.problem, offset=len(test))
                if plan.spec.options["gate"]
                else None
            )
            result, metrics = gated(result, valid, table.problem)
            result = keep_integers(result, plan.spec.options["int_columns"])
    except BaseException:  # failed or cancelled: the output shows every row the store keeps (the rest unprocessed)
        if output is not None:
            with contextlib.suppress(Exception):  # never hide the error that ended the run
                kept = result_table(test, store.rows(run_id), table.problem)
                write_table(keep_integers(kept, plan.spec.options["int_columns"]), output)
        raise
    write = functools.partial(write_table, result, output) if output is not None else lambda: None
    record = completed(store, run_id, write, metrics, scheduler.stats())
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
