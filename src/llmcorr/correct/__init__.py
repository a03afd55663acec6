"""The LLMCorr method as a library: data, knowledge selection, prompt templates, parsing, metrics."""

from .corrector import Corrector
from .data import Predictions, load_predictions
from .metrics import classification_metrics, regression_metrics

__all__ = [
    "Corrector",
    "Predictions",
    "classification_metrics",
    "load_predictions",
    "regression_metrics",
]
