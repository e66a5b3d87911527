"""Reports on project results (Qt-free)."""

from .csv_export import CSV_COLUMNS, export_csv

__all__ = ["CSV_COLUMNS", "export_csv"]
