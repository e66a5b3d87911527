"""The training pipeline over the methods: settings, calibration of thresholds (hold-out or
cross-fit), and the train-and-calibrate job the CLI, the GUI worker and the research tools share.

``holdout`` imports neither torch nor Qt, so the GUI may read its rules directly."""
