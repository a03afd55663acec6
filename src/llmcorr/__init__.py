"""llmcorr: LLMs as post-hoc correctors of ML predictions (LLMCorr), and the experiment bench around them.

>>> import llmcorr
>>> result = llmcorr.correct("predictions.csv", task="can penetrate the blood-brain barrier", shots=3)
>>> result.metrics["corrected"]
"""

from ._version import __version__
from .config import Config, ProviderConfig
from .correct import Predictions, load_predictions
from .errors import (
    ConfigError,
    DataError,
    FatalProviderError,
    LlmcorrError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    TemplateError,
    TransientError,
    UserError,
)
from .providers import Completion, GenParams, LocalProvider, Message, OpenAIProvider, Provider
from .runs import CorrectionResult, RunSpec, correct, correct_async
from .store import RunRecord, Store

__all__ = [
    "Completion",
    "Config",
    "ConfigError",
    "CorrectionResult",
    "DataError",
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
    "RateLimitError",
    "RunRecord",
    "RunSpec",
    "Store",
    "TemplateError",
    "TransientError",
    "UserError",
    "__version__",
    "correct",
    "correct_async",
    "load_predictions",
]
