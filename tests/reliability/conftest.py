"""``from conftest import texture`` here gets tests/conftest.py's helpers.

pytest registers every folder's conftest.py as the module ``conftest``: once tests/gui/ is collected,
that name is the GUI's.  This file takes the name for tests/reliability/ and re-exports the shared
generated-image helpers (loaded from their file, under another name, so nothing is copied)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tests_shared_conftest", Path(__file__).parents[1] / "conftest.py")
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
texture, with_defect, write_rgb, assert_same_predictions = (
    _shared.texture, _shared.with_defect, _shared.write_rgb, _shared.assert_same_predictions)
