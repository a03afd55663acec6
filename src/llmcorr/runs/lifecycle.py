"""One lifecycle for every run kind: plan → create → execute → finish, and resume and rerun of a recorded run.

    start(plan, ...)   a planned run (kinds.py `Plan`) recorded and executed; `resume_from` reuses another run's rows
    resume(run, ...)   a stopped run continued: its finished rows kept, its failed ones (unless `skip_failed`) and
                       missing ones run, into the same run
    rerun(run, ...)    a recorded run made again as a new run, from its spec (free where its answers are cached)

Whatever the kind, a run is recorded before its first request, its rows are committed as they finish (by the local
or the Ray executor, executors.py), a run that does not complete is marked cancelled, failed or (killed) interrupted
with its usage so far, and one that completes writes its output file before it is marked completed
(outputs.py `completed`). What differs between kinds is behind the `Plan` and `RunOutput` protocols.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from contextlib import nullcontext
from itertools import chain
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError
from ..scheduler import describe_endpoints
from ..store import RowRecord, Store
from .engine import ProgressFactory, ProgressFn, recorded
from .estimate import describe_estimate
from .executors import Executor, LocalExecutor
from .kinds import Plan, RunOutput, kind_for
from .llm import CachedLLM
from .outputs import claim_output, completed
from .spec import ConfirmFn, recorded_output, spec_of

log = logging.getLogger("llmcorr")


async def start(
    plan: Plan,
    *,
    name: str | None = None,
    output: str | Path | None = None,
    cache: bool = True,
    progress: ProgressFactory | None = None,
    confirm: ConfirmFn | None = None,
    executor: Executor | None = None,
    concurrency: int | None = None,
    resume_from: str | None = None,
    recorded_options: Mapping[str, Any] | None = None,
    rerun_of: str | None = None,
) -> Any:
    """Record the planned run and execute it; returns its kind's result. `confirm` is asked with the estimate before
    anything is recorded or spent (False: the run does not start); `recorded_options` are added to the spec's options
    (e.g. the names in `--allow-env`); `rerun_of` names the run this one makes again."""
    started = time.perf_counter()
    runner = executor or LocalExecutor()
    runner.check(plan)
    log.info("%s", plan.describe())
    if plan.estimate is not None:
        log.info("estimate: %s", describe_estimate(plan.estimate))
    with Store(plan.config.store_path) as store:
        store.check_name_free(name)
        if confirm is not None and not confirm(plan.estimate, plan.scheduler):
            await plan.scheduler.aclose()
            raise UserError("run cancelled before it started; nothing was spent")
        recorded: dict[str, Any] = dict(recorded_options or {})
        if runner.name != "local":
            recorded["executor"] = runner.name  # `runs show` says how it ran; a resume runs locally
        reuse: dict[int, RowRecord] = {}
        if resume_from is not None:
            source, reuse = plan.reusable(store, resume_from)
            recorded["resumed_from"] = source.id
            log.info("reusing %d of %d rows from run %s", len(reuse), plan.rows, source.label)
        options = plan.spec.options.model_copy(update=recorded)
        spec = plan.spec.model_copy(update={"cache": cache, "rerun_of": rerun_of, "options": options})
        estimate = plan.estimate.to_dict() if plan.estimate is not None else None
        run_id = store.create_run(plan.kind, spec.to_dict(), plan.rows, name=name, estimate=estimate)
        claim_output(store, run_id, output)
        store.add_rows(run_id, list(reuse.values()))
        out = plan.output(store, run_id, output, reused=len(reuse))
        return await execute(plan, store, run_id, reuse, out, runner, progress, cache, concurrency, started)


async def resume(
    run: str,
    *,
    config: Config | None = None,
    output: str | Path | None = None,
    progress: ProgressFactory | None = None,
    skip_failed: bool = False,
    **given: Any,
) -> Any:
    """Continue a stopped run of any kind: finished rows kept (no token spent on them again), failed rows retried
    (`skip_failed`: kept as they are; a request the server rejects fails again), missing rows run. Its files are
    found again or `given` (`data`, `flow`, `provider`) and must be the same bytes (checked by hash). The output goes
    to `output`, else to the file the run was writing (with every kept row, whether or not the resume completes)."""
    started = time.perf_counter()
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
    output = output if output is not None else recorded_output(record)
    plan = kind_for(record.kind).recorded(record, config, output, given)
    with Store(config.store_path) as store:
        if output is not None:
            store.set_output_path(record.id, output)  # claimed first: a file another run writes stops this here
        done = store.reopen_run(record.id, retry_failed=not skip_failed)
        log.info(
            "resuming %s: %d of %d rows kept, %d to run; endpoints: %s",
            record.label,
            len(done),
            plan.rows,
            plan.rows - len(done),
            describe_endpoints(plan.scheduler.endpoints),
        )
        out = plan.output(store, record.id, output, reused=0)
        cache = spec_of(record).cache
        return await execute(plan, store, record.id, done, out, LocalExecutor(), progress, cache, None, started)


async def rerun(
    run: str,
    *,
    config: Config | None = None,
    name: str | None = None,
    output: str | Path | None = None,
    progress: ProgressFactory | None = None,
    **given: Any,
) -> Any:
    """A recorded run of any kind made again, as a new run from its spec (free where its answers are cached); its
    files found again or `given` (`data`, `flow`, `provider`), checked by hash."""
    config = config or Config.load()
    with Store(config.store_path) as store:
        record = store.get_run(run)
    plan = kind_for(record.kind).recorded(record, config, output, given)
    return await start(plan, name=name, output=output, progress=progress, rerun_of=record.id)


async def execute(
    plan: Plan,
    store: Store,
    run_id: str,
    skip: Collection[int],
    out: RunOutput,
    runner: Executor,
    progress: ProgressFactory | None,
    cache: bool,
    concurrency: int | None,
    started: float,
) -> Any:
    """Run the recorded run's rows not in `skip`, then finish it: completed (output written first), or cancelled,
    failed or interrupted with every row the store keeps in its output."""
    llm = CachedLLM(plan.scheduler, store, cache)
    hint = f"; resume with `llmcorr runs resume {run_id}`"
    todo = plan.rows - len(skip)
    out.open()  # the rows kept so far, in the output before any new one (a kill cannot truncate it to fewer)
    try:
        with plan.context(llm):
            async with recorded(store, run_id, plan.scheduler, plan.config, plan.kind, hint=hint):
                shown = progress(todo, f"{plan.verb} {run_id}", plan.scheduler) if progress else nullcontext(None)
                with shown as on_row:
                    width, each = plan.width(concurrency), _both(on_row, out)
                    for stage in plan.stages(store, run_id, skip):
                        if stage.settled:
                            store.add_rows(run_id, stage.settled)
                            for row in stage.settled:
                                each(row)
                        items = iter(stage.items)
                        first = next(items, None)
                        if first is not None:  # (an empty stage starts no executor: no Ray instance for nothing)
                            await runner.run(plan, chain([first], items), store, run_id, llm, width, each)
                metrics, write = await out.finish()
    except BaseException:  # failed or cancelled: the output shows every row the store keeps
        out.kept()
        raise
    record = completed(store, run_id, write, metrics, plan.scheduler.stats())
    return out.result(record, time.perf_counter() - started)


def _both(on_row: ProgressFn | None, out: RunOutput) -> ProgressFn:
    def both(row: RowRecord) -> None:
        if on_row is not None:
            on_row(row)
        out.row(row)

    return both
