"""llmcorr: LLMs as post-hoc correctors of ML predictions (LLMCorr), and the experiment bench around them.

>>> import llmcorr
>>> result = llmcorr.correct("predictions.csv", task="can penetrate the blood-brain barrier", shots=3)
>>> result.metrics["corrected"]

Recorded runs, as `llmcorr runs …` manages them (`Experiments(path)` for another store file):

>>> llmcorr.experiments.list_runs(tag="baseline")
>>> llmcorr.experiments.compare_runs(["try1", "try2"])     # a DataFrame, one column per run
"""

from ._version import __version__
from .api import correct, estimate, resume, run
from .config import Config, EndpointConfig, ProviderConfig
from .correct import CorrectionMetrics, Predictions, load_predictions
from .errors import (
    ConfigError,
    DataError,
    FatalProviderError,
    LlmcorrError,
    NotFoundError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    RunCancelled,
    TemplateError,
    TransientError,
    UserError,
)
from .providers import Completion, GenParams, LocalProvider, Message, OpenAIProvider, Provider
from .runs import CorrectionResult, Estimate, RunResult, RunSpec, achat, chat, correct_async
from .runs.experiments import Experiments, experiments
from .store import RowRecord, RunRecord, Store
from .tracing import trace

__all__ = [
    "Completion",
    "Config",
    "ConfigError",
    "CorrectionMetrics",
    "CorrectionResult",
    "DataError",
    "EndpointConfig",
    "Estimate",
    "Experiments",
    "FatalProviderError",
    "GenParams",
    "LlmcorrError",
    "LocalProvider",
    "Message",
    "NotFoundError",
    "OpenAIProvider",
    "Predictions",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RowRecord",
    "RunCancelled",
    "RunRecord",
    "RunResult",
    "RunSpec",
    "Store",
    "TemplateError",
    "TransientError",
    "UserError",
    "__version__",
    "achat",
    "chat",
    "correct",
    "correct_async",
    "estimate",
    "experiments",
    "load_predictions",
    "resume",
    "run",
    "trace",
]
