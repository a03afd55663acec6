"""The run kind `correct` (kinds.py `RunKind`): what re-creates a recorded correct run, its data and
`plan_correction` options from its spec, its files found again (or given anew) and checked against their hashes.
Used by `runs resume` and `runs rerun` of a correct run (lifecycle.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config, EndpointConfig
from ..correct.corrector import builtin_template
from ..errors import DataError, UserError
from ..providers import Provider
from ..store import RunRecord
from .correct_options import CorrectOptions, CorrectSpecOptions
from .correction import CorrectionPlan, plan_correction
from .kinds import register_kind
from .spec import RunSpec, recorded_data, recorded_endpoints, recorded_file, spec_of


def recorded_options(
    record: RunRecord,
    config: Config,
    predictions: str | Path | pd.DataFrame | None = None,
    provider: Provider | EndpointConfig | None = None,
    template: str | Path | None = None,
) -> tuple[str | Path | pd.DataFrame, CorrectOptions, dict[str, Any]]:
    """The data, options and `plan_correction` keywords that re-create a recorded correct run, its files found again
    (or given: `predictions`, `template`) and checked against their hashes."""
    if record.kind != "correct":
        raise UserError(f"run {record.label} is a {record.kind} run; only correct runs can be resumed or rerun")
    spec = spec_of(record)
    assert isinstance(spec.options, CorrectSpecOptions)
    data: str | Path | pd.DataFrame = recorded_data(record, predictions, "predictions")
    if template is None:
        template = recorded_template(record.label, spec)
    elif not Path(template).is_file():
        raise DataError(f"--flow {template}: no such template file")
    # the run's own endpoints, as recorded: names, kinds, quotas, key variable names (never keys)
    recorded = recorded_endpoints(spec.options, config)
    where = {
        "provider": provider,
        "endpoints": [e.name for e in recorded] or None,
        "config": config.model_copy(update={"endpoints": recorded}) if recorded else config,
    }
    return data, spec.options.asked(template, spec.params), where


def recorded_template(label: str, spec: RunSpec) -> Path:
    """The run's prompt template, found again: a built-in one in this installation of llmcorr (it may have moved
    with an upgrade; the hash check says whether it is the same), a user's own where it was recorded."""
    path = Path(spec.template)
    if path.parent.name == "templates" and path.parent.parent.name == "correct" and not path.is_file():
        assert isinstance(spec.options, CorrectSpecOptions)
        return builtin_template(spec.options.problem)
    return recorded_file(label, str(path), "prompt template", "--flow NEWPLACE.jinja")


class CorrectKind:
    """The run kind `correct`."""

    names = ("correct",)
    options_model = CorrectSpecOptions

    def recorded(
        self, record: RunRecord, config: Config, output: str | Path | None, given: Mapping[str, Any]
    ) -> CorrectionPlan:
        data, options, where = recorded_options(
            record, config, given.get("data"), given.get("provider"), given.get("flow")
        )
        plan = plan_correction(data, options, output=output, **where)
        spec = spec_of(record)
        if plan.corrector.template.sha256 != spec.template_sha256:
            raise UserError(f"run {record.label}: the prompt template {spec.template} has changed")
        return plan


CORRECT = register_kind(CorrectKind())
