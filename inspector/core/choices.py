"""Names the command line offers as choices, kept free of third-party imports.

``inspector --help`` builds its whole parser; importing numpy, OpenCV, SciPy or faiss for a few
names would cost a frozen application seconds.  The modules that implement these choices own the
behaviour; tests/core/test_cli.py checks that these names still match theirs
(search.INDEXES, thresholds.STRATEGIES)."""

INDEX_KINDS = ("ivf-refine", "exact", "ivf", "hnsw")     # search.INDEXES, in its order
THRESHOLD_STRATEGIES = ("mean+3std", "percentile")      # thresholds.STRATEGIES, in its order
INTERPOLATIONS = ("linear", "antialias")                # preprocess: resizing filters
