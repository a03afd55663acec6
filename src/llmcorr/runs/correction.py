"""An LLMCorr run: validate everything (`plan_correction`), then stream the test split through the corrector into the
store, through the one run lifecycle (lifecycle.py); `CorrectionPlan` is its `Plan` for the kind `correct`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Container, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct import Corrector, Predictions, load_predictions
from ..correct.rounds import LoopOptions
from ..correct.select import default_gate_rows
from ..errors import UserError
from ..providers import Provider
from ..providers.base import GenParams
from ..scheduler import Scheduler, describe_endpoints
from ..store import RowRecord, RunRecord, Store
from . import lifecycle
from .budget import Meter, parse_budget
from .correct_options import CorrectOptions, CorrectSpecOptions
from .correction_output import CorrectionOutput, CorrectionResult
from .correction_rows import CorrectionJob, correction_rows
from .correction_select import Selection, validation_rows
from .correction_table import integer_columns, recorded_table
from .engine import Process, ProgressFactory, WorkItem, make_scheduler
from .estimate import Estimate
from .executors import make_executor
from .kinds import Stage
from .llm import CachedLLM
from .outputs import check_output
from .ray_worker import Recipe, make_recipe
from .spec import ConfirmFn, RunSpec, absolute, config_source, data_sha256, endpoint_records

log = logging.getLogger("llmcorr")
_CHOSEN = set(CorrectOptions.model_fields) - {"template", "max_tokens", "temperature"}
__all__ = ["ConfirmFn", "CorrectionPlan", "CorrectionResult", "correct_async", "plan_correction", "recorded_table"]


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
    selection: Selection
    kind: str = "correct"

    @property
    def rows(self) -> int:
        return len(self.job.rows)

    @property
    def options(self) -> CorrectSpecOptions:
        """The run's options as its spec records them."""
        assert isinstance(self.spec.options, CorrectSpecOptions)
        return self.spec.options

    @property
    def verb(self) -> str:
        return "correcting"

    def describe(self) -> str:
        corrector, classes, selection = self.corrector, self.table.classes, self.selection
        shown = f" ({len(classes.names)} classes: {classes.shown()})" if classes is not None else ""
        sent = ""
        if selection.staged:
            sent = "; validation rows first, then " + (
                "the test rows the gate chooses" if selection.gate and selection.selective else "the test rows"
            )
            if selection.budget is not None:
                sent += f", least confident first, within the budget of {selection.budget.describe()}"
        return (
            f"problem: {self.table.problem}{shown}; task: {corrector.task!r}; {len(self.test)} test rows "
            f"(+{len(self.job.valid)} validation rows for the gate){sent}; {corrector.shots} shots "
            f"({corrector.knowledge.similarity or corrector.knowledge.strategy}) from {len(corrector.pool)} rows; "
            f"endpoints: {describe_endpoints(self.scheduler.endpoints)}"
        )

    def _items(self, indices: Iterable[int], skip: Container[int] = ()) -> Iterator[WorkItem]:
        # one KV cache for every endpoint (the embedded model): rows showing the same shots run next to each other
        shared = all(e.config.provider_kind.shares_kv_cache for e in self.scheduler.endpoints)
        return (self.job.item(i) for i in self.job.order(shared, indices) if i not in skip)

    def stages(self, store: Store, run_id: str, skip: Container[int]) -> Iterator[Stage]:
        """Every row at once; or, selecting (correction_select.py), the validation rows, then the test rows chosen
        once the gate has learned on them (the others recorded as not sent)."""
        selection = self.selection
        if not selection.staged:
            yield Stage(self._items(range(self.rows), skip))
            return
        valid = [i for i in selection.validation if i not in skip]
        selection.start(list(store.iter_rows(run_id, "status, output_json")), valid)
        yield Stage(self._items(valid))
        stored = list(store.iter_rows(run_id, "status, output_json"))
        send, reasons = selection.decide(stored)
        todo = [i for i in send if i not in skip]
        settled = [selection.unsent_row(i, why) for i, why in sorted(reasons.items()) if i not in skip]
        log.info(
            "%d of %d test rows to send%s",
            len(send),
            len(self.test),
            f" ({_reasons(reasons)} not sent)" if reasons else "",
        )
        selection.start(stored, todo)
        yield Stage(self._items(todo), settled)

    def width(self, concurrency: int | None) -> int:
        return concurrency or self.scheduler.max_concurrency * 2

    def context(self, llm: CachedLLM) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def processor(self, llm: CachedLLM) -> Process:
        return correction_rows(self.job.answering(self.loop), llm, self.params, self.selection.spending)

    def recipe(self, store: Store, cache: bool, width: int) -> Recipe:
        answering = self.job.answering(self.loop)
        return make_recipe(self.scheduler, store, self.params, cache, width, correction=answering)

    def reusable(self, store: Store, ref: str) -> tuple[RunRecord, dict[int, RowRecord]]:
        raise UserError("--resume-from is for prompt and flow runs; resume a correct run with `llmcorr runs resume`")

    def output(self, store: Store, run_id: str, path: str | Path | None, reused: int) -> CorrectionOutput:
        return CorrectionOutput(self, store, run_id, path)


def plan_correction(
    predictions: str | Path | pd.DataFrame,
    options: CorrectOptions | None = None,
    *,
    output: str | Path | None = None,
    endpoints: list[str] | None = None,
    provider: Provider | EndpointConfig | None = None,
    config: Config | None = None,
) -> CorrectionPlan:
    """Check everything the user can get wrong and estimate the spend, before any run is recorded or token spent."""
    o = options or CorrectOptions()
    budget = parse_budget(o.budget) if o.budget is not None else None
    config = config or Config.load()
    for name, value in (("format_retries", o.format_retries), ("double_check", o.double_check)):
        if value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    if o.samples < 1:
        raise UserError("--samples must be >= 1")
    loop = LoopOptions(o.format_retries, o.double_check, o.change_threshold, o.samples)
    table = load_predictions(predictions, columns=o.columns, problem=o.problem)
    if output is not None:  # an output the run reads, or another run writes, or cannot be written: now
        with Store(config.store_path) as store:
            data = predictions if isinstance(predictions, str | Path) else None
            check_output(output, {"data file": data, "prompt template": o.template}, store)
    corrector = Corrector(
        table,
        task=o.task,
        shots=o.shots,
        seed=o.seed,
        template=o.template,
        knowledge=o.knowledge,
        knowledge_from=o.knowledge_from,
        describe_molecules=o.describe_molecules,
    )
    test = table.split("test").reset_index(drop=True)
    if o.limit is not None:
        test = test.head(max(0, o.limit))
    scheduler = make_scheduler(config, endpoints, provider)
    meter = Meter(budget, scheduler, o.max_tokens) if budget is not None else None
    # the gate learns from a fixed number of validation rows, stratified by confidence (correction_select.py)
    gate_rows = o.gate_rows if o.gate_rows is not None else default_gate_rows(len(test))
    split = table.split("valid").reset_index(drop=True)
    m = gate_rows if o.gate else 0
    valid = validation_rows(
        corrector, split, m, o.gate_sample, o.gate_rows is not None, meter, o.samples, table.classes
    )
    job = CorrectionJob(corrector, test, valid)
    temperature = o.temperature
    if temperature is None:
        temperature = 0.7 if o.samples > 1 else 0.0  # several samples at temperature 0 would all be the same answer
    params = GenParams(max_tokens=o.max_tokens, temperature=temperature, seed=o.seed)
    prompts = [job.item(i).messages for i in range(len(job.rows))]
    selection = Selection(job, o.gate, o.selective, meter, o.samples, len(split), table.classes)
    planned = selection.estimate(prompts, scheduler, o.samples, o.max_tokens)
    recorded = CorrectSpecOptions(
        endpoint_configs=endpoint_records(scheduler),
        config=config_source(config),
        int_columns=integer_columns(predictions, table.columns),
        similarity=corrector.knowledge.similarity,
        columns=table.columns,
        problem=table.problem,
        classes=table.classes,
        gate_rows=len(valid) if o.gate else 0,
        budget=str(o.budget) if o.budget is not None else None,
        **o.model_dump(include={*_CHOSEN} - {"problem", "columns", "gate_rows", "budget"}) | {"task": corrector.task},
    )
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
        options=recorded,
    )
    return CorrectionPlan(config, table, corrector, test, job, scheduler, params, planned, spec, loop, selection)


def _reasons(reasons: dict[int, str]) -> str:
    """`12 by the gate, 3 by the budget`."""
    counts = {why: sum(1 for r in reasons.values() if r == why) for why in ("gate", "budget")}
    return ", ".join(f"{n} by the {why}" for why, n in counts.items() if n)


async def estimate_async(
    predictions: str | Path | pd.DataFrame, options: CorrectOptions | None = None, **where: Any
) -> Estimate:
    """What `correct` would spend with these options (`where`: `plan_correction`'s output, endpoints, provider,
    config); nothing is recorded or sent."""
    plan = plan_correction(predictions, options, **where)
    await plan.scheduler.aclose()
    return plan.estimate


async def correct_async(
    predictions: str | Path | pd.DataFrame,
    options: CorrectOptions | None = None,
    *,
    name: str | None = None,
    output: str | Path | None = None,
    progress: ProgressFactory | None = None,
    confirm: ConfirmFn | None = None,
    cache: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    **where: Any,
) -> CorrectionResult:
    """Correct the test split of a predictions table with an LLM (LLMCorr); see `correct` for the arguments
    (`where`: `plan_correction`'s endpoints, provider, config)."""
    runner = make_executor(executor, ray_address)
    if executor != "local" and options is not None and options.budget is not None:
        raise UserError("--budget: the budget is kept in this process; use --executor local")
    plan = plan_correction(predictions, options, output=output, **where)
    result: CorrectionResult = await lifecycle.start(
        plan,
        name=name,
        output=output,
        cache=cache,
        progress=progress,
        confirm=confirm,
        executor=runner,
    )
    return result
