"""What re-creates a recorded correct run: its data and `plan_correction` options from its spec, its files found
again (or given anew) and checked against their hashes. Used by `runs resume` and `runs rerun` of a correct run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct.corrector import builtin_template
from ..errors import DataError, UserError
from ..providers import Provider
from ..store import RunRecord
from .spec import recorded_data, recorded_endpoints, recorded_file


def recorded_options(
    record: RunRecord,
    config: Config,
    predictions: str | Path | pd.DataFrame | None = None,
    provider: Provider | EndpointConfig | None = None,
    template: str | Path | None = None,
) -> tuple[str | Path | pd.DataFrame, dict[str, Any]]:
    """The data and `plan_correction` options that re-create a recorded correct run, its files found again (or
    given: `predictions`, `template`) and checked against their hashes."""
    spec = record.spec
    if record.kind != "correct":
        raise UserError(f"run {record.label} is a {record.kind} run; only correct runs can be resumed or rerun")
    data: str | Path | pd.DataFrame = recorded_data(record, predictions, "predictions")
    if template is None:
        template = recorded_template(record)
    elif not Path(template).is_file():
        raise DataError(f"--flow {template}: no such template file")
    opts = spec["options"]
    # the run's own endpoints, as recorded: names, kinds, quotas, key variable names (never keys)
    recorded = recorded_endpoints(opts, config)
    return data, {
        "task": opts["task"],
        "shots": opts["shots"],
        "limit": opts["limit"],
        "seed": opts["seed"],
        "problem": opts["problem"],
        "columns": {k: v for k, v in opts["columns"].items() if k != v},
        "template": template,
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


def recorded_template(record: RunRecord) -> Path:
    """The run's prompt template, found again: a built-in one in this installation of llmcorr (it may have moved
    with an upgrade; the hash check says whether it is the same), a user's own where it was recorded."""
    path = Path(record.spec["template"])
    if path.parent.name == "templates" and path.parent.parent.name == "correct" and not path.is_file():
        return builtin_template(record.spec["options"]["problem"])
    return recorded_file(record.label, str(path), "prompt template", "--flow NEWPLACE.jinja")
