"""The engine: runs of every kind through one lifecycle (lifecycle.py), their typed specs, and the LLMCorr run.
The synchronous public functions (`llmcorr.correct`, `run`, `estimate`, `resume`) are in llmcorr/api.py."""

from __future__ import annotations

from .batch import RunResult, run_batch_async
from .control import rerun_any_async, resume_any_async
from .correct_options import CorrectOptions
from .correction import CorrectionResult, correct_async, estimate_async
from .estimate import Estimate
from .flows import achat, chat
from .spec import RunSpec

__all__ = [
    "CorrectOptions",
    "CorrectionResult",
    "Estimate",
    "RunResult",
    "RunSpec",
    "achat",
    "chat",
    "correct_async",
    "estimate_async",
    "rerun_any_async",
    "resume_any_async",
    "run_batch_async",
]
