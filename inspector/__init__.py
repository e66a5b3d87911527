"""Inspector: visual quality inspection with anomaly detection."""

__version__ = "0.1.0"

# torchvision beside a CPU-only torch (the CPU package): see torchvision_compat.py.  Only adds an
# import finder; nothing is imported here.
from . import torchvision_compat as _torchvision_compat  # noqa: E402

_torchvision_compat.install()
