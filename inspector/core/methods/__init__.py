"""Anomaly-detection methods: each a strategy object with ``fit`` and a model with ``score_batch``."""

from .base import AnomalyModel, FitContext, FrameSource, Method, Prediction, get_method, method_names, register

__all__ = ["AnomalyModel", "FitContext", "FrameSource", "Method", "Prediction", "get_method",
           "method_names", "register"]
