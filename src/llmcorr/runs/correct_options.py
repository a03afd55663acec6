"""A correct run's options: `CorrectOptions`, what the user asks for (the one set the CLI, the Python API, planning
and resume share, with its defaults set here once), and `CorrectSpecOptions`, what a run's spec records of them
(resolved: the task, the problem and the gate's rows as the run used them) with what planning found."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..correct.classes import Classes
from ..errors import UserError
from ..store import RunRecord
from .spec import KindOptions, first_error, shown_spec

Problem = Literal["auto", "classification", "multiclass", "regression"]


class _Choices(BaseModel):
    """The options both the request and the record hold."""

    task: str | None = None  # what a positive label means (regression: what the value is); None: from the data
    shots: int | str = 3  # knowledge rows per query, or "all"
    limit: int | None = None  # only the first N test rows
    seed: int = 0  # knowledge selection and sampling
    knowledge: str = "random"  # how shots are chosen: random, fixed, knn, stratified
    knowledge_from: str = "valid"  # valid, train, train+valid
    format_retries: int = 1  # re-asks after a malformed answer
    double_check: int = 0  # rounds of "are you sure?" after a strong change
    change_threshold: float = 0.5  # regression: relative change that counts as strong
    samples: int = 1  # self-consistency: answers per row
    gate: bool = True  # only the corrections a validation-chosen gate accepts
    gate_rows: int | None = None  # validation rows the gate learns from, stratified by confidence (None: as many
    # as test rows, within [20, 100]; with a budget, at most what half of it pays for)
    gate_sample: Literal["stratified", "first"] = "stratified"  # which validation rows: spread over confidence, or
    # the first ones (runs recorded before stratified sampling)
    selective: bool = True  # with the gate: send only the test rows it would let a correction through on
    budget: int | str | None = None  # most requests (500), tokens (2M-tokens) or dollars (3usd), validation included
    describe_molecules: bool = False  # SMILES inputs: add RDKit descriptions


class CorrectOptions(_Choices):
    """What a correct run is asked to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: Problem = "auto"
    columns: dict[str, str] | None = None  # role -> the user's column, e.g. {"input": "smiles"}
    template: str | Path | None = None  # the user's own prompt template (None: the built-in one)
    max_tokens: int = 64
    temperature: float | None = None  # None: 0, or 0.7 with samples > 1

    @classmethod
    def given(cls, caller: str, **values: Any) -> CorrectOptions:
        """The options a caller passed, checked: one line naming the first bad one."""
        try:
            return cls(**values)
        except ValidationError as exc:
            given = exc.errors()[0].get("input")
            raise UserError(f"{caller}: {first_error(exc)} (got {given!r})") from None


DEFAULTS: dict[str, Any] = {name: field.default for name, field in CorrectOptions.model_fields.items()}


class CorrectSpecOptions(KindOptions, _Choices):
    """A correct run's options as its spec records them (the template and the sampling parameters are the spec's
    own `template` and `params`)."""

    problem: Literal["classification", "multiclass", "regression"] = "classification"
    columns: dict[str, str] = Field(default_factory=dict)  # every role -> its column
    classes: Classes | None = None  # multiclass: the classes and where the model's probabilities are
    similarity: str | None = None  # the knn knowledge's measure
    int_columns: list[str] = Field(default_factory=list)  # roles written back as integers
    selective: bool = False  # a run recorded before selective correction sent every test row …
    gate_sample: Literal["stratified", "first"] = "first"  # … and learned its gate on the first validation rows

    @classmethod
    def from_version_1(cls, options: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Version 1 nested the per-row effort as `loop`, and a run recorded before the gate existed had none."""
        flat = {**options, **(options.get("loop") or {})}
        flat.setdefault("gate", False)
        return super().from_version_1(flat, spec)

    @classmethod
    def of(cls, record: RunRecord) -> CorrectSpecOptions | None:
        """A recorded run's correct options (None for a run of another kind)."""
        spec = shown_spec(record) if record.kind == "correct" else None
        return spec.options if spec is not None and isinstance(spec.options, cls) else None

    def asked(self, template: str | Path, params: dict[str, Any]) -> CorrectOptions:
        """The options that make this run again (with its template found again)."""
        chosen = self.model_dump(include=set(_Choices.model_fields))
        columns = {role: column for role, column in self.columns.items() if role != column}
        temperature = params.get("temperature", 0.0)
        return CorrectOptions(
            **chosen,
            problem=self.problem,
            columns=columns,
            template=template,
            max_tokens=params["max_tokens"],
            temperature=temperature,
        )
