"""torchvision's Python models beside a CPU-only torch whose torchvision has no compiled operators.

PyPI's torchvision wheels for Linux are built against CUDA torch: their ``_C.so`` needs
``libtorch_cuda.so``.  Beside the CPU torch the CPU package ships (torch 2.13.0+cpu, with
torchvision 0.28.0, its paired release) that extension cannot load, which torchvision tolerates
(its operators are then "unavailable"), except that ``torchvision._meta_registrations``
registers fake kernels for ``torchvision::nms`` and ``::qnms`` unconditionally and so
``import torchvision`` fails with "operator torchvision::nms does not exist".

Inspector uses only torchvision's models and feature extraction (pure Python), none of its
compiled operators (nms, roi_align, the image decoders).  So when the extension did not load,
the ``nms`` and ``qnms`` schemas are declared, with no kernel, just before that module runs: torchvision then
imports, its models work, and its operators still report themselves missing
(``torchvision.ops.nms`` raises torchvision's own "Couldn't load custom C++ ops" error).
Where the extension loads (a CUDA torch) this does nothing.

:func:`install` only adds an import finder (no import of torch); it is called from
``inspector/__init__.py``.
"""

from __future__ import annotations

import sys

_TARGET = "torchvision._meta_registrations"
# torchvision 0.28/0.29's schemas (torch._C._get_schema where the extension loads)
SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
           "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def declare_missing_operators() -> bool:
    """Declare torchvision::nms and ::qnms if torchvision's extension did not load. True when it did so."""
    import torch
    import torchvision.extension
    if torchvision.extension._has_ops():
        return False
    try:
        torch._C._get_schema("torchvision::nms", "")
        return False                                  # declared already (by us, or someone)
    except RuntimeError:
        pass
    global _LIBRARY
    _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")  # kept alive: dropping it undefines
    for schema in SCHEMAS:
        _LIBRARY.define(schema)
    return True


_LIBRARY = None


class _Finder:
    """Runs :func:`declare_missing_operators` once, when torchvision imports its meta registrations."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != _TARGET:
            return None
        try:
            sys.meta_path.remove(cls)
        except ValueError:
            pass
        declare_missing_operators()
        return None                                   # the ordinary finders import the module


def install() -> None:
    if _Finder not in sys.meta_path and _TARGET not in sys.modules:
        sys.meta_path.insert(0, _Finder)
