"""Inspector: visual quality inspection with anomaly detection."""

__version__ = "0.1.0"
