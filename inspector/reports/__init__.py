"""Reports on project results (Qt-free): CSV rows (:mod:`csv_export`) and the PDF inspection
report (:mod:`pdf_report`, imported on its own: it loads matplotlib)."""

from .csv_export import CSV_COLUMNS, export_csv

__all__ = ["CSV_COLUMNS", "export_csv"]
