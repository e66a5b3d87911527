"""Anomaly-detection methods: each a strategy object with ``fit`` and a model with ``score_batch``.

Importing this package does not import torch: :mod:`.catalog` (what each method is) is readable
by the GUI and the CLI's parser as is; the names below come from :mod:`.base` when first used.
"""

_FROM_BASE = ("AnomalyModel", "FitContext", "FrameSource", "Method", "Prediction", "get_method",
              "method_names", "register")

__all__ = list(_FROM_BASE)


def __getattr__(name):
    if name in _FROM_BASE:
        from . import base
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
