"""The LLMCorr method as a library: data, knowledge selection, prompt templates, parsing, metrics (and
`CorrectionMetrics`, a correct run's metrics typed)."""

from .classes import Classes
from .corrector import Corrector
from .data import Predictions, load_predictions
from .metrics import classification_metrics, regression_metrics
from .metrics_model import CorrectionMetrics
from .metrics_multiclass import multiclass_metrics

__all__ = [
    "Classes",
    "CorrectionMetrics",
    "Corrector",
    "Predictions",
    "classification_metrics",
    "load_predictions",
    "multiclass_metrics",
    "regression_metrics",
]
