"""Prompt and flow runs: a prompt file or a Python flow over every row of a table, recorded as a run.

plan_batch(...)        (batch_plan.py) everything the user can get wrong is checked before a run is recorded
run_batch_async(...)   a new run; `resume_from=` reuses another run's finished rows (no token spent on them)
(resume and rerun are every kind's: lifecycle.py `resume`/`rerun`, control.py `resume_any_async`/`rerun_any_async`)

All three go through the one run lifecycle (lifecycle.py); `BATCH` is the run kind that re-creates a recorded run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError
from ..pf.flex import FLEX_SUFFIXES
from ..prompts.env import allowing_env, env_policy, key_names
from ..store import RunRecord
from . import lifecycle
from .batch_output import RunResult
from .batch_plan import KINDS, BatchPlan, BatchSpecOptions, parse_mapping, plan_batch, row_inputs
from .dag_run import is_dag, plan_dag
from .engine import ProgressFactory
from .executors import make_executor
from .kinds import register_kind
from .spec import ConfirmFn, recorded_data, recorded_endpoints, recorded_file, spec_of

__all__ = [
    "KINDS",
    "BatchPlan",
    "RunResult",
    "parse_mapping",
    "plan_batch",
    "recorded_plan",
    "row_inputs",
    "run_batch_async",
]


async def run_batch_async(
    flow: str | Path | Callable[..., Any],
    data: str | Path | Any | None = None,
    *,
    name: str | None = None,
    output: str | Path | None = None,
    resume_from: str | None = None,
    cache: bool = True,
    progress: ProgressFactory | None = None,
    concurrency: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    confirm: ConfirmFn | None = None,
    allow_env: list[str] | None = None,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> RunResult:
    """Plan, record and run a batch; see the module docstring and `llmcorr.run` for the options. `confirm` is
    asked with the estimate before anything is recorded or spent (False: the run does not start). `allow_env`: the
    environment variables a prompt file's inputs and sample may read (`--allow-env`; prompts/env.py)."""
    runner = make_executor(executor, ray_address)
    keys = key_names(options.get("config") or Config.load()) if allow_env else set()
    with allowing_env(env_policy(allow_env or [], keys)):
        plan = _plan(flow, data, variant, overrides, output=output, **options)
    result: RunResult = await lifecycle.start(
        plan,
        name=name,
        output=output,
        cache=cache,
        progress=progress,
        confirm=confirm,
        executor=runner,
        concurrency=concurrency,
        resume_from=resume_from,
        # names only: a resume reads them again
        recorded_options={"allow_env": sorted(set(allow_env))} if allow_env else None,
    )
    return result


def _plan(
    flow: str | Path | Callable[..., Any],
    data: Any,
    variant: str | None,
    overrides: Mapping[str, Any] | None,
    **options: Any,
) -> BatchPlan:
    """A DAG flow's plan (dag_run.py), or a prompt's or other flow's (batch_plan.py)."""
    if is_dag(flow):
        assert isinstance(flow, str | Path)
        return plan_dag(flow, data, variant=variant, overrides=overrides, **options)
    if variant:
        raise UserError("--variant selects a node variant of a Prompt flow DAG flow (a folder with flow.dag.yaml)")
    if overrides:
        raise UserError("--override sets a node of a Prompt flow DAG flow (a folder with flow.dag.yaml)")
    return plan_batch(flow, data, **options)


def _recorded_flow(record: RunRecord) -> str:
    """A recorded run's prompt file or flow, found again (its module's folder importable again for a module flow)."""
    spec = spec_of(record)
    ref, opts = spec.template, spec.options
    assert isinstance(opts, BatchSpecOptions)
    if record.kind == "prompt":
        return str(recorded_file(record.label, ref, "prompt file", "--flow NEWPLACE.prompty"))
    if record.kind == "dag":
        return str(recorded_file(record.label, ref, "flow file", "--flow NEWPLACE/flow.dag.yaml"))
    if ref.endswith(FLEX_SUFFIXES):  # a flex flow: its flow.flex.yaml
        return str(recorded_file(record.label, ref, "flow file", "--flow NEWPLACE/flow.flex.yaml"))
    module_ref, _, name = ref.rpartition(":")
    hint = f"--flow NEWPLACE.py:{name}"
    if module_ref.endswith(".py"):
        return f"{recorded_file(record.label, module_ref, 'flow file', hint)}:{name}"
    if opts.flow_file:
        recorded_file(record.label, opts.flow_file, f"flow module {module_ref!r}", hint)
    root = opts.flow_path
    if root and root not in sys.path:
        sys.path.insert(0, root)
    return str(ref)


def recorded_plan(
    record: RunRecord,
    config: Config,
    data: str | Path | Any | None = None,
    flow: str | Path | Callable[..., Any] | None = None,
    output: str | Path | None = None,
) -> BatchPlan:
    """The plan that re-creates a recorded prompt or flow run, checked against its data and prompt/flow hashes."""
    if record.kind not in KINDS:
        raise UserError(f"run {record.label} is a {record.kind} run")
    spec = spec_of(record)
    opts = spec.options
    assert isinstance(opts, BatchSpecOptions)
    data = recorded_data(record, data, "data")
    endpoints = recorded_endpoints(opts, config)
    allowed = opts.allow_env  # the variables the run's prompt file was let read (`--allow-env`)
    with allowing_env(env_policy(allowed, key_names(config) if allowed else ())):
        plan = _plan(
            flow if flow is not None else _recorded_flow(record),
            data,
            opts.variant,
            opts.overrides,
            connections=opts.connections,
            init=opts.init or None,
            mapping=opts.mapping,
            upstream=opts.run,
            output=output,
            limit=opts.limit,
            max_tokens=spec.params["max_tokens"],
            temperature=spec.params.get("temperature", 0.0),
            seed=spec.params.get("seed") or 0,
            endpoints=[e.name for e in endpoints] or None,
            config=config.model_copy(update={"endpoints": endpoints}) if endpoints else config,
        )
    if plan.spec.template_sha256 != spec.template_sha256:
        what = {"prompt": "prompt file", "dag": "flow or one of its nodes' files"}.get(
            record.kind, "flow's source file"
        )
        raise UserError(f"run {record.label}: the {what} {spec.template} has changed since the run was made")
    if not plan.spec.options.config:  # a rerun from elsewhere still names the config the run was made with
        plan.spec.options.config = opts.config
    return plan


class BatchKind:
    """The run kinds `prompt` and `flow` (kinds.py `RunKind`)."""

    names = KINDS
    options_model = BatchSpecOptions

    def recorded(
        self, record: RunRecord, config: Config, output: str | Path | None, given: Mapping[str, Any]
    ) -> BatchPlan:
        if given.get("provider") is not None:
            raise UserError(f"run {record.label} is a {record.kind} run: it runs on its recorded endpoints")
        return recorded_plan(record, config, given.get("data"), given.get("flow"), output)


BATCH = register_kind(BatchKind())
