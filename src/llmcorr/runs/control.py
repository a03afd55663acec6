"""Resume and rerun any recorded run, whatever its kind: the run kind it was recorded as (kinds.py) re-creates it,
and the one lifecycle (lifecycle.py) runs it. `data` is a run's data (a correct run's predictions), `flow` its
prompt file, flow or prompt template."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import lifecycle

if TYPE_CHECKING:
    from .batch_output import RunResult
    from .correction_output import CorrectionResult


def _generic(options: dict[str, Any]) -> dict[str, Any]:
    """A correct run's words for its files (`predictions`, `template`) as every kind's (`data`, `flow`)."""
    if "predictions" in options:
        options["data"] = options.pop("predictions")
    if "template" in options:
        options["flow"] = options.pop("template")
    return options


async def resume_any_async(run: str, **options: Any) -> CorrectionResult | RunResult:
    """Continue a stopped run of any kind; see lifecycle.py `resume`."""
    result: CorrectionResult | RunResult = await lifecycle.resume(run, **_generic(options))
    return result


async def rerun_any_async(run: str, **options: Any) -> CorrectionResult | RunResult:
    """Make a recorded run of any kind again, as a new run (free where its answers are cached)."""
    result: CorrectionResult | RunResult = await lifecycle.rerun(run, **_generic(options))
    return result
