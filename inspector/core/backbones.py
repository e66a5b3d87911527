"""Backbones: torchvision models, their layer taps, where their weights come from, and the device.
The list of backbones (names, taps, channels) is in :mod:`.backbone_specs`, readable without torch.

Weights are resolved in this order:

1. an explicit file (``--weights FILE`` or a setting in the app),
2. the ``INSPECTOR_WEIGHTS`` environment variable,
3. torchvision's own cache / download (``~/.cache/torch/hub/checkpoints``),

and when none works, :class:`WeightsError` says how to get them.  Random weights are used only
when asked for explicitly (speed measurements and plumbing tests).
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from .backbone_specs import (DEFAULT_BACKBONE, DEVICE_ENV, REGISTRY, WEIGHTS_ENV, BackboneSpec,  # noqa: F401
                             get_spec)
from .errors import WeightsError, WeightsMissingError


def default_device() -> torch.device:
    """CUDA when present (or what ``INSPECTOR_DEVICE`` says), else the CPU."""
    wanted = os.environ.get(DEVICE_ENV)
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(state: Dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class WeightsSource:
    kind: str               # "file", "env", "torchvision", "random"
    path: Optional[str]     # the file read, if any
    sha256: str
    seed: Optional[int] = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256, "seed": self.seed}


def _read_state_dict(path: Path, spec: BackboneSpec) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({type(exc).__name__})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj


def load_backbone_module(name: str, weights: Optional[str] = None, random_weights: bool = False,
                         seed: int = 0) -> Tuple[nn.Module, WeightsSource]:
    """Build torchvision's ``name`` with resolved weights. Returns the module and where they came from."""
    spec = get_spec(name)
    if random_weights and weights:
        raise WeightsError("choose either a weights file or random weights, not both")
    if random_weights:
        torch.manual_seed(seed)
        model = spec.build()
        return model, WeightsSource("random", None, state_dict_sha256(model.state_dict()), seed)

    kind, path = None, None
    if weights:
        kind, path = "file", Path(weights).expanduser()
    elif os.environ.get(WEIGHTS_ENV):
        kind, path = "env", Path(os.environ[WEIGHTS_ENV]).expanduser()
    if path is not None:
        state = _read_state_dict(path, spec)
    else:
        kind = "torchvision"
        fname = spec.weights.url.rsplit("/", 1)[-1]
        path = Path(torch.hub.get_dir()) / "checkpoints" / fname
        if not path.is_file():
            try:
                spec.weights.get_state_dict(progress=True)
            except Exception as exc:
                raise WeightsMissingError(spec.name, fname, path.parent, WEIGHTS_ENV, str(exc)[:120]) from None
        state = _read_state_dict(path, spec)
    model = spec.build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "keys or shapes differ"
        raise WeightsError(f"{path} does not fit {spec.name}: {first[:200]}") from None
    return model, WeightsSource(kind, str(path), file_sha256(path))


class TapExtractor(nn.Module):
    """The backbone cut after its deepest tap; ``forward`` returns the tapped maps in stride order."""

    def __init__(self, model: nn.Module, spec: BackboneSpec, strides: Sequence[int]):
        super().__init__()
        self.spec = spec
        self.strides = tuple(sorted(strides))
        names = spec.tap_names(self.strides)
        self.body = create_feature_extractor(model, return_nodes={n: n for n in names})
        self._names = names

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        fast = self.__dict__.get("_fast")
        if fast is None or fast.module is not self.body:
            fast = FastForward(self.body)         # kept outside the module's state: not a submodule
            self.__dict__["_fast"] = fast
        out = fast(x)
        return [out[n] for n in self._names]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_fast", None)                  # a copy makes its own from its own weights
        return state

    @property
    def channels(self) -> List[int]:
        return self.spec.tap_channels(self.strides)


def load_extractor(name: str, strides: Sequence[int], weights: Optional[str] = None,
                   random_weights: bool = False, seed: int = 0,
                   device: Optional[torch.device] = None) -> Tuple[TapExtractor, WeightsSource]:
    """A frozen, eval-mode extractor of ``name`` at the given strides, on ``device``."""
    spec = get_spec(name)
    missing = [s for s in strides if s not in spec.taps]
    if missing:
        raise WeightsError(f"{name} has no tap at stride {missing}")
    model, source = load_backbone_module(name, weights, random_weights, seed)
    ext = TapExtractor(model, spec, strides).eval()
    for p in ext.parameters():
        p.requires_grad_(False)
    return ext.to(device or default_device()), source


EAGER_ENV = "INSPECTOR_EAGER"     # "1": run extractors exactly as built (no folding, no channels-last)


class FastForward:
    """Calls a frozen network (an fx graph, as :class:`TapExtractor`'s body) the fastest way this
    machine runs it; returns what the network does.

    On the CPU it calls a copy of the network with each BatchNorm folded into the convolution
    before it (``torch.fx``'s conv/BN fusion, for a module in eval mode) and its weights and input
    in channels-last order, which oneDNN's convolutions (MobileNetV2's depthwise ones above all)
    run much faster: MobileNetV2's stride-8/16 taps of a 256 px frame take about 17 ms an image on
    one core instead of 31 (README, "PatchCore details"), and the values agree with the plain module's
    to float rounding (about 1e-6 here).  The copy is made on the first call and again when the
    network's weights change in place (an APC encoder loaded into it).  On another device, with
    the network in training mode or gradients on, under ``INSPECTOR_EAGER=1``, or where the copy
    cannot be made: the network itself.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self._fast = None
        self._key = None

    def _state_key(self):
        return (tuple(p._version for p in self.module.parameters()), tuple(b._version for b in self.module.buffers()))

    def _usable(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and not self.module.training and not torch.is_grad_enabled()
                and os.environ.get(EAGER_ENV, "") != "1")

    def __call__(self, x: torch.Tensor):
        if not self._usable(x):
            return self.module(x)
        key = self._state_key()
        if self._fast is None or key != self._key:
            self._fast, self._key = self._optimised(), key
        if self._fast is False:
            return self.module(x)
        return self._fast(x.contiguous(memory_format=torch.channels_last))

    def _optimised(self):
        """The folded, channels-last copy, or False (use the plain module) where it cannot be made."""
        try:
            from torch.fx.experimental.optimization import fuse
            fast = copy.deepcopy(self.module).eval()        # (a copied fx graph forgets eval mode)
            if isinstance(fast, torch.fx.GraphModule):
                fast = fuse(fast, inplace=True)
            return fast.to(memory_format=torch.channels_last)
        except Exception:  # noqa: BLE001 - a graph the fusion cannot take: the module as it is
            return False
