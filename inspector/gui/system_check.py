"""Before the window opens: can Qt reach a display on this machine?

On Linux, Qt's X11 platform plugin (``libqxcb.so``) needs system libraries that PySide6's wheels do
not ship (``libxcb-cursor0``, ``libxcb-icccm4``, ``libxcb-keysyms1``, ...).  Without one of them Qt
prints a long plugin message and aborts.  We load the plugin ourselves first, so that a missing
library becomes one line that names the Debian/Ubuntu package to install.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path
from typing import Optional

# soname prefix → the Debian/Ubuntu package that provides it (Qt's own list for the xcb plugin)
PACKAGES = {
    "libxcb-cursor.so": "libxcb-cursor0",
    "libxcb-icccm.so": "libxcb-icccm4",
    "libxcb-keysyms.so": "libxcb-keysyms1",
    "libxcb-image.so": "libxcb-image0",
    "libxcb-render-util.so": "libxcb-render-util0",
    "libxcb-shape.so": "libxcb-shape0",
    "libxcb-randr.so": "libxcb-randr0",
    "libxcb-xfixes.so": "libxcb-xfixes0",
    "libxcb-xkb.so": "libxcb-xkb1",
    "libxcb-util.so": "libxcb-util1",
    "libxkbcommon-x11.so": "libxkbcommon-x11-0",
    "libxkbcommon.so": "libxkbcommon0",
    "libX11-xcb.so": "libx11-xcb1",
    "libEGL.so": "libegl1",
    "libGL.so": "libgl1",
    "libOpenGL.so": "libopengl0",
    "libfontconfig.so": "libfontconfig1",
    "libdbus-1.so": "libdbus-1-3",
    "libglib-2.0.so": "libglib2.0-0",
}
ALL_PACKAGES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
                "libxcb-shape0 libxcb-randr0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libfontconfig1")


def _platform() -> Optional[str]:
    """The platform plugin Qt will pick, where it can be told without starting Qt."""
    name = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if name:
        return name
    if os.environ.get("WAYLAND_DISPLAY") and os.environ.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    return "xcb"


def missing_package(error: str) -> str:
    """The package to install for a loader error such as 'libxcb-icccm.so.4: cannot open ...'."""
    m = re.search(r"(lib[\w.+-]+?\.so)(\.[\d.]+)?:", error)
    if not m:
        return ""
    return PACKAGES.get(m.group(1), "")


def display_problem() -> Optional[str]:
    """One line saying why the window cannot open here, or None when nothing is known to be wrong."""
    if not sys.platform.startswith("linux") or _platform() != "xcb":
        return None
    if not os.environ.get("DISPLAY"):
        return ("no display to open the window on (DISPLAY is not set): start Inspector from a desktop "
                "session, or use the command line (inspector --help)")
    import PySide6
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        return None
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        package = missing_package(str(exc))
        lib = str(exc).split(":")[0]
        if package:
            return (f"Qt cannot open a window: the system library {lib} is missing. Install it with "
                    f"'sudo apt-get install {package}' (Debian/Ubuntu; Qt's X11 plugin needs: {ALL_PACKAGES})")
        return f"Qt cannot open a window: its X11 plugin does not load ({exc})"
    return None
