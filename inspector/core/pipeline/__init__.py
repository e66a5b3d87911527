"""The pipelines over the methods.  Training: settings, calibration of thresholds (hold-out or
cross-fit), and the train-and-calibrate job the CLI, the GUI worker and the research tools share.
Inspection: the one inspect loop (``inspect``), the watched folder that feeds it (``watch``) and
what predict and watch write (``outputs``).

``holdout`` imports neither torch nor Qt, so the GUI may read its rules directly."""
