"""The launch command says what is missing instead of letting Qt abort."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from inspector.gui import system_check


@pytest.mark.parametrize("error, package", [
    ("libxcb-icccm.so.4: cannot open shared object file: No such file or directory", "libxcb-icccm4"),
    ("libxcb-cursor.so.0: cannot open shared object file: No such file or directory", "libxcb-cursor0"),
    ("libxcb-keysyms.so.1: cannot open shared object file", "libxcb-keysyms1"),
    ("something else went wrong", ""),
])
def test_a_loader_error_names_the_package_to_install(error, package):
    assert system_check.missing_package(error) == package


def test_offscreen_needs_no_display(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("DISPLAY", raising=False)
    assert system_check.display_problem() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is for Linux")
def test_without_a_display_the_app_says_so_in_one_line_and_exits_2():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "inspector"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "DISPLAY is not set" in lines[0]
