"""What a run kind is, for the one lifecycle (lifecycle.py) that starts, resumes and reruns every kind.

    RunKind.plan(...)      check everything the user can get wrong, estimate: a Plan (nothing recorded or spent)
    RunKind.recorded(...)  the Plan that re-creates a recorded run, its files found again and checked by hash
    Plan.stages(...)       the rows still to run, as work items, in stages (the next one planned once the previous
                           has run: a correct run's test rows chosen after its validation rows); Plan.processor /
                           Plan.recipe turn one into a row
    Plan.output(...)       where finished rows go besides the store (the output file), and the run's metrics and
                           result when it completes

The built-in kinds are `correct` (runs/correction.py, correction_spec.py) and `prompt` and `flow` (runs/batch.py).
A new kind is one module that implements these protocols and calls `register_kind`; nothing else changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UserError

if TYPE_CHECKING:
    from ..config import Config
    from ..scheduler import Scheduler
    from ..store import RowRecord, RunRecord, Store
    from .engine import Process, WorkItem
    from .estimate import Estimate
    from .llm import CachedLLM
    from .ray_worker import Recipe
    from .spec import KindOptions, RunSpec


@dataclass(frozen=True)
class Stage:
    """Rows a run answers at once (`Plan.stages`), and rows it records as they are, sending nothing."""

    items: Iterable[WorkItem]
    settled: list[RowRecord] = field(default_factory=list)


class RunOutput(Protocol):
    """A run's rows as the user gets them: the output file (streamed or written at the end) and the result."""

    def open(self) -> None:
        """Before any new row: show the rows the store already holds (a resume's, or rows reused from another run)."""
        ...

    def row(self, row: RowRecord) -> None:
        """A row just committed."""
        ...

    def kept(self) -> None:
        """The run did not complete: the output shows every row the store keeps. Best effort, never raises."""
        ...

    async def finish(self) -> tuple[dict[str, Any] | None, Callable[[], object]]:
        """The run's metrics, and the write of its final output (done before the run is marked completed)."""
        ...

    def result(self, record: RunRecord, wall_s: float) -> Any:
        """What the Python API returns for the completed run."""
        ...


class Plan(Protocol):
    """A validated run of some kind, ready to start: nothing has been recorded or spent yet."""

    @property
    def kind(self) -> str:
        """The run kind's name, as the run records it."""
        ...

    @property
    def config(self) -> Config: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def spec(self) -> RunSpec: ...

    @property
    def estimate(self) -> Estimate | None:
        """What the run would spend (None where it cannot be counted ahead: a flow's calls)."""
        ...

    @property
    def rows(self) -> int:
        """Rows the run records."""
        ...

    @property
    def verb(self) -> str:
        """The progress bar's word for it: 'running', 'correcting'."""
        ...

    def describe(self) -> str:
        """The start-of-run line: what runs over what, on which endpoints."""
        ...

    def stages(self, store: Store, run_id: str, skip: Container[int]) -> Iterator[Stage]:
        """The work items of the rows not in `skip`, in the order they should run, built as they are asked for: in
        stages, each asked for once the previous one has run and its rows are in the store, with the rows a stage
        records as they are, sending nothing (`Stage.settled`)."""
        ...

    def width(self, concurrency: int | None) -> int:
        """Rows in flight at once."""
        ...

    def context(self, llm: CachedLLM) -> AbstractContextManager[None]:
        """Entered around the execution (a flow's `llmcorr.chat` reaches the run's LLM through it)."""
        ...

    def processor(self, llm: CachedLLM) -> Process:
        """One work item to one row, in this process (the local executor)."""
        ...

    def recipe(self, store: Store, cache: bool, width: int) -> Recipe:
        """What a Ray worker needs to process rows as `processor` would (the Ray executor)."""
        ...

    def reusable(self, store: Store, ref: str) -> tuple[RunRecord, dict[int, RowRecord]]:
        """Another run's finished rows that answer this plan's rows (`resume_from`), copied with no token spent."""
        ...

    def output(self, store: Store, run_id: str, path: str | Path | None, reused: int) -> RunOutput:
        """The recorded run's output (`path`: its output file, if any; `reused`: rows taken from another run)."""
        ...


class RunKind(Protocol):
    """A kind of run: its names as recorded, and how a recorded one is made again."""

    @property
    def names(self) -> tuple[str, ...]:
        """The kind names its runs are recorded under."""
        ...

    @property
    def options_model(self) -> type[KindOptions]:
        """Its options as its runs' specs record them (spec.py `RunSpec.options`)."""
        ...

    def recorded(self, record: RunRecord, config: Config, output: str | Path | None, given: Mapping[str, Any]) -> Plan:
        """The plan that re-creates `record`: its files found again (or `given`: `data`, `flow`, `provider`) and
        checked against their recorded hashes."""
        ...


_KINDS: dict[str, RunKind] = {}
_BUILTIN = {
    "correct": "llmcorr.runs.correction_spec",
    "prompt": "llmcorr.runs.batch",
    "flow": "llmcorr.runs.batch",
    "dag": "llmcorr.runs.batch",  # a Prompt flow DAG flow: planned by dag_run.py, recorded and run as a batch
}


def register_kind(kind: RunKind) -> RunKind:
    """Make a run kind known by each of its names (a run records its kind's name)."""
    for name in kind.names:
        _KINDS[name] = kind
    return kind


def known_kind(name: str) -> RunKind | None:
    """The run kind recorded as `name`, if this installation has it; the built-in kinds register when their module
    is first imported."""
    if name not in _KINDS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    return _KINDS.get(name)


def kind_for(name: str) -> RunKind:
    """The run kind recorded as `name`, or one line saying which kinds there are."""
    found = known_kind(name)
    if found is None:
        known = ", ".join(sorted(set(_KINDS) | set(_BUILTIN)))
        raise UserError(f"runs of kind {name!r} cannot be resumed or rerun here (known kinds: {known})")
    return found
