"""The one run lifecycle (runs/lifecycle.py) with a run kind that is nothing but this file: a `shout` run answers
each word of a list with the word in capitals, through the real response cache, scheduler and store (SQLite).

What it shows: a new kind needs only the protocols of runs/kinds.py and `register_kind`; a run of it is recorded,
executed, finished (output written before `completed`) and returns its kind's result; a run stopped by a fatal
error is `failed` with its finished rows kept, and `resume` runs only the rest; `rerun` makes a new run from the
recorded spec (answered from the cache); the spec it records is typed by the kind's options model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmcorr.config import Config
from llmcorr.errors import FatalProviderError, UserError
from llmcorr.providers.base import Completion, GenParams, Message, Provider
from llmcorr.runs import lifecycle
from llmcorr.runs.engine import Process, WorkItem, prompt_rows
from llmcorr.runs.executors import LocalExecutor, make_executor
from llmcorr.runs.kinds import Stage, kind_for, known_kind, register_kind
from llmcorr.runs.llm import CachedLLM
from llmcorr.runs.ray_worker import Recipe
from llmcorr.runs.spec import KindOptions, RunSpec, spec_of
from llmcorr.scheduler import Scheduler
from llmcorr.store import RowRecord, RunRecord, Store


class Shouter(Provider):
    """An endpoint that answers with the last word of the prompt in capitals; `fail_on` words are a bad key."""

    kind = "shouter"

    def __init__(self, fail_on: Container[str] = ()) -> None:
        self.fail_on = fail_on
        self.asked: list[str] = []

    @property
    def model(self) -> str:
        return "shouter-1"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        word = messages[-1].content.split()[-1]
        if word in self.fail_on:
            raise FatalProviderError("401: bad key")
        self.asked.append(word)
        await asyncio.sleep(0.001)
        return Completion(word.upper(), 3, 1, 1.0, self.model, "stop")


class ShoutOptions(KindOptions):
    words: list[str]


class Answers:
    def interpret(self, item: WorkItem, text: str) -> tuple[dict[str, Any], str | None]:
        return {"shout": text}, None


class ShoutOutput:
    def __init__(self, plan: ShoutPlan, store: Store, run_id: str) -> None:
        self.plan, self.store, self.run_id = plan, store, run_id
        self.streamed: list[int] = []
        self.written: list[str] = []
        self.kept_called = False

    def open(self) -> None:
        self.streamed.extend(r.row_index for r in self.store.iter_rows(self.run_id))

    def row(self, row: RowRecord) -> None:
        self.streamed.append(row.row_index)

    def kept(self) -> None:
        self.kept_called = True

    async def finish(self) -> tuple[dict[str, Any] | None, Callable[[], object]]:
        shouts = [(r.output or {})["shout"] for r in self.store.iter_rows(self.run_id)]
        return {"shouted": len(shouts)}, lambda: self.written.extend(shouts)

    def result(self, record: RunRecord, wall_s: float) -> dict[str, Any]:
        return {"run": record.id, "status": record.status, "metrics": record.metrics, "written": self.written}


@dataclass
class ShoutPlan:
    config: Config
    scheduler: Scheduler
    spec: RunSpec
    words: list[str]
    estimate: None = None
    kind: str = "shout"
    outputs: list[ShoutOutput] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.words)

    @property
    def verb(self) -> str:
        return "shouting"

    def describe(self) -> str:
        return f"shouting {len(self.words)} words"

    def stages(self, store: Store, run_id: str, skip: Container[int]) -> Iterator[Stage]:
        items = (
            WorkItem(i, word, {"word": word}, [Message("user", f"shout {word}")])
            for i, word in enumerate(self.words)
            if i not in skip
        )
        yield Stage(items)

    def width(self, concurrency: int | None) -> int:
        return concurrency or 4

    def context(self, llm: CachedLLM) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def processor(self, llm: CachedLLM) -> Process:
        return prompt_rows(Answers(), llm, GenParams())

    def recipe(self, store: Store, cache: bool, width: int) -> Recipe:
        raise NotImplementedError

    def reusable(self, store: Store, ref: str) -> tuple[RunRecord, dict[int, RowRecord]]:
        raise UserError("no reuse")

    def output(self, store: Store, run_id: str, path: str | Path | None, reused: int) -> ShoutOutput:
        self.outputs.append(ShoutOutput(self, store, run_id))
        return self.outputs[-1]


class ShoutKind:
    names = ("shout",)
    options_model = ShoutOptions
    provider = Shouter()

    def plan(self, words: list[str], config: Config) -> ShoutPlan:
        spec = RunSpec(
            kind="shout",
            data="DataFrame",
            data_sha256="-",
            template="shout",
            template_sha256="-",
            endpoints=[self.provider.describe()],
            params=GenParams().to_dict(),
            options=ShoutOptions(words=words),
        )
        return ShoutPlan(config, Scheduler(self.provider), spec, words)

    def recorded(
        self, record: RunRecord, config: Config, output: str | Path | None, given: Mapping[str, Any]
    ) -> ShoutPlan:
        options = spec_of(record).options
        assert isinstance(options, ShoutOptions)
        return self.plan(options.words, config)


SHOUT = register_kind(ShoutKind())
WORDS = [f"word{i}" for i in range(30)]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    SHOUT.provider = Shouter()
    return Config(home=tmp_path, store_url=None)


def test_a_new_kind_runs_through_the_lifecycle_and_records_a_typed_spec(config: Config) -> None:
    plan = SHOUT.plan(WORDS, config)
    result = asyncio.run(lifecycle.start(plan, name="loud"))
    assert result["status"] == "completed" and result["metrics"] == {"shouted": 30}
    assert sorted(result["written"]) == sorted(w.upper() for w in WORDS)
    assert sorted(plan.outputs[0].streamed) == list(range(30))  # every committed row reached the output
    with Store(config.store_path) as store:
        record = store.get_run("loud")
    spec = spec_of(record)
    assert isinstance(spec.options, ShoutOptions) and spec.options.words == WORDS
    assert spec.version == 2 and record.rows_done == 30


def test_a_failed_run_keeps_its_rows_and_resume_runs_only_the_rest(config: Config) -> None:
    SHOUT.provider = Shouter(fail_on={"word20"})
    plan = SHOUT.plan(WORDS, config)
    with pytest.raises(FatalProviderError):
        asyncio.run(lifecycle.start(plan, name="hoarse", concurrency=1))
    assert plan.outputs[0].kept_called
    with Store(config.store_path) as store:
        record = store.get_run("hoarse")
        kept = {r.row_index for r in store.iter_rows(record.id)}
    assert record.status == "failed" and kept == set(range(20))
    SHOUT.provider = Shouter()
    result = asyncio.run(lifecycle.resume("hoarse", config=config))
    assert result["status"] == "completed" and result["run"] == record.id
    assert sorted(SHOUT.provider.asked) == sorted(WORDS[20:])  # the kept rows were not asked again


def test_rerun_is_a_new_run_from_the_recorded_spec_answered_from_the_cache(config: Config) -> None:
    asyncio.run(lifecycle.start(SHOUT.plan(WORDS[:5], config), name="first"))
    SHOUT.provider = Shouter()
    result = asyncio.run(lifecycle.rerun("first", config=config, name="again"))
    assert result["status"] == "completed" and SHOUT.provider.asked == []  # all five from the response cache
    with Store(config.store_path) as store:
        first, again = store.get_run("first"), store.get_run("again")
    assert spec_of(again).rerun_of == first.id and again.id != first.id


def test_the_registry_knows_the_built_in_kinds_and_names_the_known_ones() -> None:
    assert known_kind("correct") is not None and known_kind("prompt") is known_kind("flow") is known_kind("dag")
    assert known_kind("nonesuch") is None
    with pytest.raises(UserError, match=r"kind 'nonesuch' cannot be resumed.*correct, dag, flow, prompt, shout"):
        kind_for("nonesuch")


def test_executors_by_name() -> None:
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match=r"--executor: expected one of local, ray, got 'dask'"):
        make_executor("dask")
