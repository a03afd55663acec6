"""The public Python API: `correct`, `estimate`, `run` and `resume`, with real keyword parameters (help() and
signatures show them) whose defaults are the engine's (runs/), set there once. Synchronous, and usable inside a
running event loop (Jupyter); `progress=True` shows the same progress bar as the CLI (cli/progress.py)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ._sync import run_sync
from .config import Config, EndpointConfig
from .providers import Provider
from .runs import lifecycle
from .runs.batch import RunResult, run_batch_async
from .runs.batch_plan import plan_batch
from .runs.control import resume_any_async
from .runs.correct_options import DEFAULTS, CorrectOptions
from .runs.correction import CorrectionResult, correct_async, estimate_async, plan_correction
from .runs.engine import ProgressFactory
from .runs.estimate import Estimate
from .runs.spec import ConfirmFn


def _defaults(*functions: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of the engine functions the public API wraps: set there once, shown here by help() and
    `inspect.signature`, and compared with the CLI's in tests/unit/test_api.py."""
    found: dict[str, Any] = {}
    for fn in functions:
        for p in inspect.signature(fn).parameters.values():
            if p.default is not p.empty:
                found.setdefault(p.name, p.default)
    return found


_SHOWN = {"progress": False}  # the engine takes a progress display; the API, whether to show the CLI's
_C = DEFAULTS | _defaults(correct_async, plan_correction) | _SHOWN
_R = _defaults(run_batch_async, plan_batch) | _SHOWN
_GIVEN = {"predictions": None, "data": None, "flow": None, "provider": None}  # a run's files, if they moved
_S = _defaults(lifecycle.resume) | _GIVEN | _SHOWN


def _shown(progress: bool) -> ProgressFactory | None:
    """The CLI's progress bar (imported only when asked for: `import llmcorr` does not load the CLI)."""
    if not progress:
        return None
    from .cli.progress import row_progress

    return row_progress


def correct(
    predictions: str | Path | pd.DataFrame,
    *,
    task: str | None = _C["task"],
    shots: int | str = _C["shots"],
    limit: int | None = _C["limit"],
    seed: int = _C["seed"],
    name: str | None = _C["name"],
    output: str | Path | None = _C["output"],
    problem: Literal["auto", "classification", "multiclass", "regression"] = _C["problem"],
    columns: Mapping[str, str] | None = _C["columns"],
    template: str | Path | None = _C["template"],
    max_tokens: int = _C["max_tokens"],
    temperature: float | None = _C["temperature"],
    knowledge: str = _C["knowledge"],
    knowledge_from: str = _C["knowledge_from"],
    format_retries: int = _C["format_retries"],
    double_check: int = _C["double_check"],
    change_threshold: float = _C["change_threshold"],
    samples: int = _C["samples"],
    gate: bool = _C["gate"],
    gate_rows: int | None = _C["gate_rows"],
    gate_sample: Literal["stratified", "first"] = _C["gate_sample"],
    selective: bool = _C["selective"],
    budget: int | str | None = _C["budget"],
    describe_molecules: bool = _C["describe_molecules"],
    endpoints: list[str] | None = _C["endpoints"],
    provider: Provider | EndpointConfig | None = _C["provider"],
    config: Config | None = _C["config"],
    progress: bool = _C["progress"],
    confirm: ConfirmFn | None = _C["confirm"],
    cache: bool = _C["cache"],
    executor: str = _C["executor"],
    ray_address: str | None = _C["ray_address"],
) -> CorrectionResult:
    """Correct a model's test-split predictions with an LLM (LLMCorr) and record the run in the store.

    `predictions` is a CSV/JSONL/Parquet file or a DataFrame with columns id, input, prediction, label, split
    (remap with `columns={"input": "smiles"}`). `task` says what a positive label means (regression: what the value
    is; multiclass: what the class is); `shots` knowledge rows per query (a number or "all"), chosen by
    `knowledge` (random, fixed, knn, stratified) from `knowledge_from` (valid, train, train+valid); `limit` corrects
    only the first N test rows; `problem` auto
    (0/1 labels: classification; text labels, or 3+ integer classes predicted as classes: multiclass; numbers:
    regression), classification (multiclass with labels other than 0/1), multiclass or regression;
    `template` your own prompt template; `format_retries`, `double_check`, `change_threshold`, `samples` how hard to
    work on each row; `gate` applies only the corrections a validation-chosen gate accepts (learnt on `gate_rows`
    validation rows, `gate_sample` "stratified" by confidence or the "first" ones), and `selective` sends only the
    test rows it would accept (False: every one); `budget` caps what the run sends, validation included: requests
    (500), tokens ("2M-tokens") or dollars at the configured prices ("3usd"), the least confident test rows first;
    `describe_molecules` adds RDKit descriptions of SMILES inputs. `endpoints` names llmcorr.toml's endpoints;
    `provider` (a Provider or EndpointConfig) is used instead, default the embedded local model. `confirm` is called
    with the estimate before anything is spent (return False to cancel); `cache=True` answers from the response cache
    at no cost. `output` is written with the corrected rows. `executor` "local", or "ray": the rows are answered on a
    Ray cluster (`pip install 'llmcorr[ray]'`) at `ray_address` (default: a local Ray instance), their prompts built
    here. Works in scripts and inside a running event loop (Jupyter).
    """
    options = _correct_options("correct()", locals())
    return run_sync(
        correct_async(
            predictions,
            options,
            name=name,
            output=output,
            progress=_shown(progress),
            confirm=confirm,
            cache=cache,
            executor=executor,
            ray_address=ray_address,
            endpoints=endpoints,
            provider=provider,
            config=config,
        )
    )


def estimate(
    predictions: str | Path | pd.DataFrame,
    *,
    task: str | None = _C["task"],
    shots: int | str = _C["shots"],
    limit: int | None = _C["limit"],
    seed: int = _C["seed"],
    output: str | Path | None = _C["output"],
    problem: Literal["auto", "classification", "multiclass", "regression"] = _C["problem"],
    columns: Mapping[str, str] | None = _C["columns"],
    template: str | Path | None = _C["template"],
    max_tokens: int = _C["max_tokens"],
    temperature: float | None = _C["temperature"],
    knowledge: str = _C["knowledge"],
    knowledge_from: str = _C["knowledge_from"],
    format_retries: int = _C["format_retries"],
    double_check: int = _C["double_check"],
    change_threshold: float = _C["change_threshold"],
    samples: int = _C["samples"],
    gate: bool = _C["gate"],
    gate_rows: int | None = _C["gate_rows"],
    gate_sample: Literal["stratified", "first"] = _C["gate_sample"],
    selective: bool = _C["selective"],
    budget: int | str | None = _C["budget"],
    describe_molecules: bool = _C["describe_molecules"],
    endpoints: list[str] | None = _C["endpoints"],
    provider: Provider | EndpointConfig | None = _C["provider"],
    config: Config | None = _C["config"],
) -> Estimate:
    """What `correct` would spend with the same arguments (requests, tokens, cost, ETA); nothing is sent."""
    options = _correct_options("estimate()", locals())
    where = {"output": output, "endpoints": endpoints, "provider": provider, "config": config}
    return run_sync(estimate_async(predictions, options, **where))


def _correct_options(caller: str, arguments: dict[str, Any]) -> CorrectOptions:
    """The `CorrectOptions` among a public function's arguments."""
    return CorrectOptions.given(caller, **{k: v for k, v in arguments.items() if k in CorrectOptions.model_fields})


def run(
    flow: str | Path | Callable[..., Any],
    data: Any = None,
    *,
    init: Mapping[str, Any] | None = _R["init"],
    mapping: Mapping[str, str] | None = _R["mapping"],
    upstream: str | None = _R["upstream"],
    output: str | Path | None = _R["output"],
    name: str | None = _R["name"],
    limit: int | None = _R["limit"],
    max_tokens: int = _R["max_tokens"],
    temperature: float = _R["temperature"],
    seed: int = _R["seed"],
    concurrency: int | None = _R["concurrency"],
    endpoints: list[str] | None = _R["endpoints"],
    provider: Provider | EndpointConfig | None = _R["provider"],
    config: Config | None = _R["config"],
    cache: bool = _R["cache"],
    resume_from: str | None = _R["resume_from"],
    progress: bool = _R["progress"],
    executor: str = _R["executor"],
    ray_address: str | None = _R["ray_address"],
    confirm: ConfirmFn | None = _R["confirm"],
    allow_env: list[str] | None = _R["allow_env"],
    variant: str | None = _R["variant"],
    connections: Mapping[str, str] | None = _R["connections"],
    overrides: Mapping[str, Any] | None = _R["overrides"],
) -> RunResult:
    """Run a flow over every row of `data` and record it as a run; returns the rows joined with their outputs.

    `flow` is a function, a class, "module:name", "file.py:Name", or a `.prompty` file. `data` is a CSV/JSONL/Parquet
    path or a DataFrame (pandas, polars). `init` a class flow's arguments; `mapping` {arg: "${data.column}"}, or
    "${run.outputs.key}" with `upstream` (a run id); `output` written as rows finish; `limit` only the first N rows;
    `max_tokens`, `temperature`, `seed` for the LLM calls; `concurrency` rows in flight; `endpoints` names
    llmcorr.toml's endpoints, `provider` is used instead; `cache=True` answers from the response cache at no cost;
    `resume_from` a run whose finished rows are reused, no token spent; `executor` "local", or "ray": the rows spread
    over a Ray cluster (`pip install 'llmcorr[ray]'`) at `ray_address` (default: a local Ray instance). `confirm` is
    called with the estimate before anything is recorded or spent (return False: the run does not start).
    `allow_env` names the environment variables a prompt file's inputs and sample may read as `${env:VAR}`.
    A Prompt flow folder (flow.dag.yaml or flow.flex.yaml) runs unchanged: `variant` "${node.variant_id}" picks a
    DAG node's variant, `connections` {connection: endpoint} maps its connections (default: the endpoint of the
    same name), `overrides` {"node.connection": name, "node.input": value} sets its nodes as a pf run's
    `connections:` does. Inside a Python flow, `llmcorr.chat(...)` (sync) or `await llmcorr.achat(...)` asks the
    run's LLM.
    """
    return run_sync(
        run_batch_async(
            flow,
            data,
            init=init,
            mapping=mapping,
            upstream=upstream,
            output=output,
            name=name,
            limit=limit,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            concurrency=concurrency,
            endpoints=endpoints,
            provider=provider,
            config=config,
            cache=cache,
            resume_from=resume_from,
            progress=_shown(progress),
            executor=executor,
            ray_address=ray_address,
            confirm=confirm,
            allow_env=allow_env,
            variant=variant,
            connections=connections,
            overrides=overrides,
        )
    )


def resume(
    run: str,
    *,
    predictions: str | Path | pd.DataFrame | None = _S["predictions"],
    data: Any = _S["data"],
    flow: str | Path | Callable[..., Any] | None = _S["flow"],
    output: str | Path | None = _S["output"],
    progress: bool = _S["progress"],
    config: Config | None = _S["config"],
    provider: Provider | EndpointConfig | None = _S["provider"],
    skip_failed: bool = _S["skip_failed"],
) -> CorrectionResult | RunResult:
    """Continue a stopped run (interrupted, cancelled or failed): finished rows are kept, failed rows retried
    (`skip_failed=True`: kept as they are, for rows the server rejects, which would fail again), missing rows run.

    A correct run takes `predictions` (needed again for a run made from a DataFrame) and `provider`; a prompt or flow
    run takes `data` and `flow` (needed again when not importable); any run `output`, `progress` and `config`.
    """
    given = {"predictions": predictions, "data": data, "flow": flow, "provider": provider}
    options = {k: v for k, v in given.items() if v is not None}
    return run_sync(
        resume_any_async(
            run, output=output, progress=_shown(progress), config=config, skip_failed=skip_failed, **options
        )
    )


__all__ = ["correct", "estimate", "resume", "run"]
