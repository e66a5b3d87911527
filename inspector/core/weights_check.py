"""Is a file a backbone's weights, and are a backbone's weights on this computer? Answered in
milliseconds, without importing torch or building the network (for the training wizard).

:func:`check_weights_file` reads only the file's index: a PyTorch file's pickled state dict
(the zip format of ``torch.save``, or the older plain-pickle one) is unpickled with stand-ins for
its tensors (their shapes, never their data, and no other code: only the names a state dict uses
are allowed), a ``.safetensors`` file's JSON header is read as it is.  The key names and a few
shapes are compared with what each backbone of :data:`backbone_specs.REGISTRY` expects, so a file
of another backbone is named as such.  :func:`find_weights` says where a backbone's weights are
found without asking the user (a remembered file, ``INSPECTOR_WEIGHTS``, torchvision's cache).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .backbone_specs import REGISTRY, WEIGHTS_ENV

# per backbone: how many entries its state dict has (BatchNorm's num_batches_tracked not counted),
# and the shapes of a few that tell the architectures apart (torchvision's definitions)
SIGNATURES: Dict[str, Tuple[int, Dict[str, Tuple[int, ...]]]] = {
    "wide_resnet50_2": (267, {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (128, 64, 1, 1),
                              "layer4.0.conv2.weight": (1024, 1024, 3, 3), "fc.weight": (1000, 2048)}),
    "resnet18": (102, {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
                       "layer4.0.conv2.weight": (512, 512, 3, 3), "fc.weight": (1000, 512)}),
    "resnet50": (267, {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 1, 1),
                       "layer4.0.conv2.weight": (512, 512, 3, 3), "fc.weight": (1000, 2048)}),
    "mobilenet_v2": (262, {"features.0.0.weight": (32, 3, 3, 3), "features.18.0.weight": (1280, 320, 1, 1),
                           "classifier.1.weight": (1000, 1280)}),
}


@dataclass
class WeightsCheck:
    ok: bool                        # the file holds weights that fit the backbone asked about
    message: str                    # one sentence for the user
    fits: List[str] = field(default_factory=list)   # the backbones the file's weights fit
    n_tensors: int = 0


class _Tensor:
    """A tensor's stand-in: its shape only."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)


def _rebuild_tensor(storage, offset, size, *args, **kwargs):
    return _Tensor(size)


def _rebuild_parameter(data, *args, **kwargs):
    return data


class _Safetensors(dict):
    safetensors = True


class _Storage:
    def __init__(self, *args, **kwargs):
        pass


class _IndexUnpickler(pickle.Unpickler):
    """Unpickles a state dict's structure: tensors become :class:`_Tensor`, nothing else runs."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name.startswith("_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name.startswith("_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name == "Size":
            return tuple
        if module in ("torch", "torch.storage") and (name.endswith("Storage") or name == "device"):
            return _Storage
        if module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64", "uint8"):
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a state dict")

    def persistent_load(self, pid):
        return _Storage()


def _read_index(path: Path):
    """The file's top object with tensor stand-ins; raises ValueError when it is not a weights file."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == b"PK\x03\x04":                                   # torch.save's zip format
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    raise ValueError("a zip archive without a PyTorch state dict")
                with z.open(name) as f:
                    return _IndexUnpickler(f).load()
        except pickle.UnpicklingError:
            raise ValueError("it holds Python objects besides tensors (a whole saved network? Inspector "
                             "needs its state_dict())") from None
        except (zipfile.BadZipFile, EOFError, AttributeError, TypeError) as exc:
            raise ValueError(f"a damaged or unknown PyTorch file ({type(exc).__name__})") from None
    n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    if 2 <= n < 10**8 and _peek(path, 8, 1) == b"{":                # safetensors: a JSON header first
        with open(path, "rb") as f:
            f.seek(8)
            try:
                header = json.loads(f.read(n))
            except ValueError:
                raise ValueError("a damaged safetensors file") from None
        return _Safetensors({k: _Tensor(v["shape"]) for k, v in header.items()
                             if k != "__metadata__" and isinstance(v, dict) and "shape" in v})
    if head[:1] == b"\x80":                                         # the older plain-pickle format
        try:
            with open(path, "rb") as f:
                up = _IndexUnpickler(f)
                magic = up.load()
                if magic != 0x1950A86A20F9469CFC6C:
                    raise ValueError("a pickle file that is not PyTorch weights")
                up.load()       # protocol version
                up.load()       # system info
                return up.load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError):
            raise ValueError("a pickle file that is not PyTorch weights") from None
    raise ValueError("not a PyTorch or safetensors weights file")


def _peek(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _fits(state: Dict, backbone: str) -> bool:
    count, shapes = SIGNATURES[backbone]
    if sum(1 for k in state if not str(k).endswith("num_batches_tracked")) != count:
        return False
    return all(isinstance(state.get(k), _Tensor) and state[k].shape == s for k, s in shapes.items())


def check_weights_file(path, backbone: str) -> WeightsCheck:
    """Whether ``path`` holds ImageNet-style weights that fit ``backbone`` (quick: see the module)."""
    label = REGISTRY[backbone].label.split(" (")[0] if backbone in REGISTRY else backbone
    p = Path(str(path)).expanduser()
    if not str(path).strip():
        return WeightsCheck(False, "No weights file chosen.")
    if not p.is_file():
        return WeightsCheck(False, f"There is no file {p}.")
    try:
        obj = _read_index(p)
    except OSError as exc:
        return WeightsCheck(False, f"{p.name} cannot be read ({exc.strerror or type(exc).__name__}).")
    except ValueError as exc:
        return WeightsCheck(False, f"{p.name} is not a weights file: {exc}.")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, _Tensor) for v in obj.values()):
        return WeightsCheck(False, f"{p.name} is a PyTorch file but not a network's weights (a state dict).")
    fits = [name for name in SIGNATURES if _fits(obj, name)]
    n = len(obj)
    if getattr(obj, "safetensors", False):
        what = " or ".join(REGISTRY[f].label.split(" (")[0] for f in fits) or "a network"
        return WeightsCheck(False, f"{p.name} is a safetensors file (weights for {what}); Inspector reads "
                                   "PyTorch .pth files: save it with torch.save, or choose a .pth file.", fits, n)
    if backbone in fits:
        return WeightsCheck(True, f"{p.name}: weights for {label} ({n} tensors).", fits, n)
    if fits:
        other = " or ".join(REGISTRY[f].label.split(" (")[0] for f in fits)
        return WeightsCheck(False, f"{p.name} holds weights for {other}, not {label}: choose that backbone, "
                                   "or another file.", fits, n)
    if backbone not in SIGNATURES:
        return WeightsCheck(True, f"{p.name}: {n} tensors (checked when training starts).", fits, n)
    return WeightsCheck(False, f"{p.name} holds weights ({n} tensors) that do not fit {label} or any "
                               "other backbone on offer.", fits, n)


def torch_cache_dir() -> Path:
    """torchvision's download folder (``torch.hub.get_dir()/checkpoints``), found as torch finds it."""
    if os.environ.get("TORCH_HOME"):
        hub = Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    else:
        hub = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "torch" / "hub"
    return hub / "checkpoints"


def find_weights(backbone: str, remembered: Optional[str] = None) -> Tuple[Optional[str], str]:
    """Where ``backbone``'s ImageNet weights are on this computer without asking: ``(path, where)``
    with where one of 'remembered', 'environment', 'torchvision cache'; ``(None, '')`` if nowhere."""
    if remembered and Path(remembered).expanduser().is_file():
        return str(Path(remembered).expanduser()), "remembered"
    env = os.environ.get(WEIGHTS_ENV)
    if env and Path(env).expanduser().is_file() and check_weights_file(env, backbone).ok:
        return str(Path(env).expanduser()), "environment"
    cache = torch_cache_dir()
    if cache.is_dir():
        for f in sorted(cache.glob(f"{backbone}-*.pth")):
            return str(f), "torchvision cache"
    return None, ""
