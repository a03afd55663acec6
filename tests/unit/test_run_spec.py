"""The typed, versioned run spec (runs/spec.py): each kind's options in its own model, a version-1 record (options as
a free dict) upgraded as it is read, a record this version cannot read named in one line."""

from __future__ import annotations

from typing import Any

import pytest

from llmcorr.errors import UserError
from llmcorr.runs.batch_plan import BatchSpecOptions
from llmcorr.runs.correct_options import CorrectOptions, CorrectSpecOptions
from llmcorr.runs.spec import SPEC_VERSION, OtherOptions, RunSpec, spec_of
from llmcorr.store import RunRecord


def v1(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "data": "/data/preds.csv",
        "data_sha256": "ab",
        "template": "/t/classification.jinja",
        "template_sha256": "cd",
        "endpoints": [{"kind": "local", "model": "m", "name": "local"}],
        "params": {"max_tokens": 32, "temperature": 0.7, "seed": 5, "stop": []},
        "options": options,
        "llmcorr_version": "0.1.0",
        "cache": False,
    }


def record(spec: dict[str, Any], kind: str = "correct") -> RunRecord:
    fields = dict.fromkeys(RunRecord.__dataclass_fields__)
    return RunRecord(**fields | {"id": "r1", "name": "old", "kind": kind, "spec": spec})  # type: ignore[arg-type]


def test_a_version_1_correct_spec_is_upgraded_into_its_typed_options() -> None:
    loop = {"format_retries": 3, "double_check": 2, "change_threshold": 0.25, "samples": 5}
    old = {"task": "is toxic", "shots": "all", "problem": "regression", "loop": loop, "retired_option": 1}
    spec = RunSpec.model_validate(v1("correct", old))
    assert spec.version == SPEC_VERSION and spec.cache is False
    options = spec.options
    assert isinstance(options, CorrectSpecOptions)
    assert (options.format_retries, options.double_check, options.change_threshold, options.samples) == (3, 2, 0.25, 5)
    assert options.gate is False  # recorded before the gate existed: the run had none
    assert options.task == "is toxic" and options.shots == "all" and options.problem == "regression"
    asked = options.asked("/t/regression.jinja", spec.params)
    assert isinstance(asked, CorrectOptions) and asked.samples == 5 and asked.temperature == 0.7
    assert asked.max_tokens == 32 and asked.gate is False


def test_a_spec_round_trips_with_its_kinds_options() -> None:
    spec = RunSpec.model_validate(v1("flow", {"mapping": {"q": "${data.x}"}, "flow_file": "/f.py", "limit": 3}))
    assert isinstance(spec.options, BatchSpecOptions) and spec.options.mapping == {"q": "${data.x}"}
    again = RunSpec.model_validate(spec.to_dict())
    assert again == spec and again.to_dict()["options"]["flow_file"] == "/f.py"


def test_a_version_2_spec_with_an_unknown_field_is_one_line() -> None:
    spec = RunSpec.model_validate(v1("prompt", {})).to_dict()
    spec["options"]["mapping_typo"] = {}
    with pytest.raises(UserError, match=r"^run old: its recorded spec cannot be read \(options\.mapping_typo: Extra "):
        spec_of(record(spec, "prompt"))


def test_a_kind_this_installation_does_not_know_keeps_its_options() -> None:
    spec = RunSpec.model_validate(v1("plugin-kind", {"anything": [1, 2]}))
    assert isinstance(spec.options, OtherOptions) and spec.to_dict()["options"]["anything"] == [1, 2]


def test_correct_options_given_badly_are_one_line() -> None:
    with pytest.raises(UserError, match=r"^correct\(\): limit: Input should be a valid integer.*got 'many'"):
        CorrectOptions.given("correct()", limit="many")
