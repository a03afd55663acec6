"""`llmcorr correct`: LLMCorr over your own predictions file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer

from .._sync import run_sync
from ..errors import UserError
from ..runs.correct_options import CorrectOptions
from ..runs.correction import correct_async, estimate_async
from ._common import (
    BaseUrlOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EndpointOpt,
    ExecutorOpt,
    KeyEnvOpt,
    ModelOpt,
    ModelPathOpt,
    NoCacheOpt,
    NoTraceOpt,
    OtlpOpt,
    ProviderKind,
    RayAddressOpt,
    YesOpt,
    console,
    load_config,
    setup_logging,
)
from ._render import estimate_table, print_result
from .confirm import confirmer
from .progress import row_progress

ROLES = ("id", "input", "prediction", "label", "split")


def parse_columns(items: list[str]) -> dict[str, str]:
    """`--column input=smiles` → {"input": "smiles"}."""
    mapping = {}
    for item in items:
        role, sep, name = item.partition("=")
        if not sep or role.strip() not in ROLES or not name.strip():
            raise UserError(f"--column {item!r}: expected ROLE=NAME with ROLE one of {', '.join(ROLES)}")
        mapping[role.strip()] = name.strip()
    return mapping


def correct(
    ctx: typer.Context,
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help="CSV, JSONL or Parquet predictions file")],
    task: Annotated[
        str | None,
        typer.Option(
            help="what a positive label means, e.g. 'can penetrate the "
            "blood-brain barrier' (regression: what the value is; multiclass: what the class is, e.g. 'the species')"
        ),
    ] = None,
    shots: Annotated[str, typer.Option(help="knowledge rows shown per query: a number, or 'all'")] = "3",
    knowledge: Annotated[
        str, typer.Option(help="how shots are chosen: random (the paper), fixed, knn (most similar), stratified")
    ] = "random",
    knowledge_from: Annotated[str, typer.Option(help="where shots come from: valid, train or train+valid")] = "valid",
    format_retries: Annotated[int, typer.Option(min=0, help="re-asks after a malformed answer")] = 1,
    double_check: Annotated[
        int, typer.Option(min=0, help="rounds of 'double-check' after a label flip or a strong change")
    ] = 0,
    change_threshold: Annotated[
        float, typer.Option(min=0, help="regression: relative change that asks for a double-check")
    ] = 0.5,
    samples: Annotated[int, typer.Option(min=1, help="self-consistency: answers per row, majority vote / mean")] = 1,
    no_gate: Annotated[
        bool, typer.Option("--no-gate", help="apply every correction (no validation-chosen gate)")
    ] = False,
    gate_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="validation rows the gate learns from, stratified by confidence (default: as many as test rows, "
            "within 20-100; with --budget, at most what half of it pays for)",
        ),
    ] = None,
    gate_sample: Annotated[
        str, typer.Option(help="which validation rows: stratified (spread over the model's confidence) or first")
    ] = "stratified",
    send_all: Annotated[
        bool,
        typer.Option(
            "--send-all", help="send every test row, not only those the gate would let a correction through on"
        ),
    ] = False,
    budget: Annotated[
        str | None,
        typer.Option(
            help="most the run sends, validation included: requests (500), tokens (2M-tokens) or dollars at the "
            "configured prices (3usd); the least confident test rows go first"
        ),
    ] = None,
    describe_molecules: Annotated[
        bool,
        typer.Option("--describe-molecules", help="inputs are SMILES: add RDKit descriptions (the paper's D variants)"),
    ] = False,
    temperature: Annotated[
        float | None, typer.Option(min=0, help="sampling temperature (default 0; 0.7 with --samples > 1)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="correct only the first N test rows")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write corrected rows (.csv/.jsonl/.parquet)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a name for the run, usable wherever its id is")] = None,
    problem: Annotated[
        str,
        typer.Option(help="auto, classification (3+ classes: multiclass), multiclass or regression"),
    ] = "auto",
    column: Annotated[
        list[str] | None, typer.Option("--column", help="map a role to your column: input=smiles (repeatable)")
    ] = None,
    template: Annotated[Path | None, typer.Option(help="your own corrector prompt template (Jinja)")] = None,
    seed: Annotated[int, typer.Option(help="seed for knowledge selection and sampling")] = 0,
    max_tokens: Annotated[int, typer.Option(min=1, help="most tokens the LLM may answer with")] = 64,
    endpoint: EndpointOpt = None,
    config_path: ConfigOpt = None,
    otlp: OtlpOpt = None,
    no_trace: NoTraceOpt = False,
    provider: ProviderKind = "local",
    model: ModelOpt = None,
    model_path: ModelPathOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    yes: YesOpt = False,
    no_cache: NoCacheOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or notes")] = False,
) -> None:
    """Correct the test split of a predictions table with an LLM (LLMCorr) and record the run.

    `llmcorr estimate` takes the same arguments and prints what the run would spend, without running it.
    """
    setup_logging(quiet)
    if problem not in ("auto", "classification", "multiclass", "regression"):
        raise UserError(f"--problem: expected auto, classification, multiclass or regression, got {problem!r}")
    config = load_config(
        provider, model, model_path, base_url, api_key_env, max_concurrency, config_path, otlp, no_trace
    )
    if shots != "all" and not shots.isdigit():
        raise UserError(f"--shots: expected a number >= 0 or 'all', got {shots!r}")
    options = CorrectOptions.given(
        "llmcorr correct",
        task=task,
        shots=shots if shots == "all" else int(shots),
        knowledge=knowledge,
        knowledge_from=knowledge_from,
        format_retries=format_retries,
        double_check=double_check,
        change_threshold=change_threshold,
        samples=samples,
        temperature=temperature,
        gate=not no_gate,
        describe_molecules=describe_molecules,
        gate_rows=gate_rows,
        gate_sample=cast(Literal["stratified", "first"], gate_sample),
        selective=not send_all,
        budget=budget,
        limit=limit,
        problem=cast(Literal["auto", "classification", "multiclass", "regression"], problem),
        columns=parse_columns(column or []),
        template=template,
        seed=seed,
        max_tokens=max_tokens,
    )
    where: dict[str, Any] = {"endpoints": endpoint, "config": config}
    if ctx.info_name == "estimate":
        console.print(estimate_table(run_sync(estimate_async(predictions, options, output=output, **where))))
        return
    result = run_sync(
        correct_async(
            predictions,
            options,
            output=output,
            name=name,
            progress=None if quiet else row_progress,
            confirm=confirmer(yes),
            cache=not no_cache,
            executor=executor,
            ray_address=ray_address,
            **where,
        )
    )
    print_result(config, result, output)
