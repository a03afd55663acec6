"""Resume and rerun any recorded run, whatever made it: `correct`, a prompt file or a Python flow."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..store import Store
from .batch import RunResult, rerun_batch_async, resume_batch_async
from .correction import CorrectionResult, rerun_async, resume_async


def _as_correct(options: dict[str, Any]) -> None:
    """The generic options in a correct run's words: `data` is its predictions, `flow` its prompt template."""
    if "data" in options:
        options["predictions"] = options.pop("data")
    if "flow" in options:
        options["template"] = options.pop("flow")


def _kind(run: str, config: Config) -> str:
    with Store(config.store_path) as store:
        return store.get_run(run).kind


async def resume_any_async(run: str, *, config: Config | None = None, **options: Any) -> CorrectionResult | RunResult:
    """Continue a stopped run of any kind; see `resume_async` (correct) and `resume_batch_async` (prompt, flow)."""
    config = config or Config.load()
    if _kind(run, config) == "correct":
        _as_correct(options)
        return await resume_async(run, config=config, **options)
    return await resume_batch_async(run, config=config, **options)


async def rerun_any_async(run: str, *, config: Config | None = None, **options: Any) -> CorrectionResult | RunResult:
    """Make a recorded run of any kind again, as a new run (free where its answers are cached)."""
    config = config or Config.load()
    if _kind(run, config) == "correct":
        _as_correct(options)
        return await rerun_async(run, config=config, **options)
    return await rerun_batch_async(run, config=config, **options)
