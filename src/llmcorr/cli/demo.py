"""`llmcorr demo`: a base model on a real dataset, corrected by the embedded LLM, in one command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, cast

import typer

from ..api import correct as run_correct
from ..config import Config
from ..correct.datasets import DATASETS, Dataset, demo_predictions
from ..errors import UserError
from ._common import ConfigOpt, YesOpt, console, setup_logging
from ._render import print_correction
from .confirm import confirmer

log = logging.getLogger("llmcorr")
DEMO_LIMIT = 20  # test rows corrected by default, and as many validation rows for the gate: ~3 min on 2 cores


def demo(
    dataset: Annotated[
        str,
        typer.Option(
            help="breast_cancer (classification), diabetes (regression), iris or wine (multiclass), or cmet "
            "(molecules: c-Met inhibitors, SMILES)"
        ),
    ] = "breast_cancer",
    shots: Annotated[int, typer.Option(min=0, help="knowledge rows shown per query")] = 3,
    limit: Annotated[
        int,
        typer.Option(
            min=1, help=f"correct the first N test rows, and N validation rows for the gate (default {DEMO_LIMIT})"
        ),
    ] = DEMO_LIMIT,
    seed: Annotated[int, typer.Option(help="seed for the split, the base model and knowledge selection")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write corrected rows here")] = None,
    describe_molecules: Annotated[
        bool, typer.Option("--describe-molecules", help="cmet: add RDKit descriptions of each molecule")
    ] = False,
    no_gate: Annotated[
        bool, typer.Option("--no-gate", help="apply every correction (no validation-chosen gate)")
    ] = False,
    endpoint: Annotated[
        list[str] | None,
        typer.Option("--endpoint", "-e", help="correct with this llmcorr.toml endpoint (default: the embedded model)"),
    ] = None,
    config_path: ConfigOpt = None,
    yes: YesOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train a base model on a bundled dataset, correct its test predictions with the embedded LLM, print metrics.

    The demo never follows llmcorr.toml's `default` endpoint: it spends nothing unless --endpoint names one."""
    setup_logging(quiet)
    if dataset not in DATASETS:
        raise UserError(f"--dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    info = DATASETS[dataset]
    table = demo_predictions(cast(Dataset, dataset), seed=seed)
    counts = {name: int((table["split"] == name).sum()) for name in ("train", "valid", "test")}
    log.info(
        "dataset %s: %d train / %d valid / %d test rows; base model: %s",
        dataset,
        counts["train"],
        counts["valid"],
        counts["test"],
        info["model"],
    )
    if limit < counts["test"]:
        log.info("correcting the first %d of %d test rows (--limit %d for all)", limit, counts["test"], counts["test"])
    # the embedded model, whatever llmcorr.toml's `default` says; its endpoints only when --endpoint names them
    config = Config.load(config_path, provider={"name": "local", "kind": "local"}, default=[])
    result = run_correct(
        table,
        task=info["task"],
        shots=shots,
        limit=limit,
        seed=seed,
        output=output,
        problem=info["problem"],
        gate=not no_gate,
        describe_molecules=describe_molecules,
        gate_rows=limit,
        endpoints=endpoint,
        config=config,
        progress=not quiet,
        confirm=confirmer(yes),
    )
    print_correction(config, result, title=f"{dataset}: base model vs LLMCorr (test split)")
    console.print(f"see it again: llmcorr runs show {result.run_id}")
