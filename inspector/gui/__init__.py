"""The desktop application (PySide6). Start it with ``inspector`` or ``python -m inspector.gui``."""

from . import qtfix  # noqa: F401  (first: works around a reference leak in PySide6 6.12.0)
