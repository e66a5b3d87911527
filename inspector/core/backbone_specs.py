"""The backbones on offer and the rule for finding a model's weights, without importing torch.

The training wizard and the command line's parser read :data:`REGISTRY` (names, labels, layer taps
and channels); :mod:`.backbones` builds the networks from it.  :func:`weights_request` says where a
saved model's backbone weights come from, for :mod:`.modelfile` and the application alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import WeightsError

WEIGHTS_ENV = "INSPECTOR_WEIGHTS"
DEVICE_ENV = "INSPECTOR_DEVICE"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    taps: Dict[int, str]           # stride -> layer name, with its channel count below
    channels: Dict[int, int]
    weights_enum: str              # torchvision weights enum name, e.g. "Wide_ResNet50_2_Weights"
    label: str = ""                # what the training wizard shows

    def tap_names(self, strides: Sequence[int]) -> List[str]:
        return [self.taps[s] for s in strides]

    def tap_channels(self, strides: Sequence[int]) -> List[int]:
        return [self.channels[s] for s in strides]

    def build(self):
        """torchvision's network, untrained (imports torch)."""
        import torchvision
        return getattr(torchvision.models, self.name)(weights=None)

    @property
    def weights(self):
        """torchvision's default ImageNet weights entry (imports torch)."""
        import torchvision
        return getattr(torchvision.models, self.weights_enum).DEFAULT


def _resnet(name: str, enum: str, widths: Tuple[int, int, int, int], label: str) -> BackboneSpec:
    return BackboneSpec(name, {4: "layer1", 8: "layer2", 16: "layer3", 32: "layer4"},
                        dict(zip((4, 8, 16, 32), widths)), enum, label)


REGISTRY: Dict[str, BackboneSpec] = {
    "wide_resnet50_2": _resnet("wide_resnet50_2", "Wide_ResNet50_2_Weights", (256, 512, 1024, 2048),
                               "Wide ResNet-50-2 (best results, slower)"),
    "resnet18": _resnet("resnet18", "ResNet18_Weights", (64, 128, 256, 512), "ResNet-18 (fast)"),
    "resnet50": _resnet("resnet50", "ResNet50_Weights", (256, 512, 1024, 2048), "ResNet-50"),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", {4: "features.3", 8: "features.6", 16: "features.13", 32: "features.18"},
        {4: 24, 8: 32, 16: 96, 32: 1280}, "MobileNet_V2_Weights", "MobileNet V2 (fastest)"),
}
DEFAULT_BACKBONE = "wide_resnet50_2"


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown backbone '{name}' (choose one of: {', '.join(REGISTRY)})") from None


def recorded_weights_found(recorded: Mapping) -> bool:
    """Whether the weights a model was trained with (its ``meta["weights"]``) are at hand without
    asking the user: random ones are made again from their seed, the others read from their path."""
    if recorded.get("kind") == "random":
        return True
    path = recorded.get("path")
    return bool(path) and Path(path).is_file()


def weights_request(recorded: Mapping, weights: Optional[str] = None) -> Dict:
    """How to get a saved model's backbone weights, as keyword arguments of
    :func:`backbones.load_extractor`: ``weights`` when given; random ones with the recorded seed;
    the recorded file (``--weights`` or the environment variable) while it exists; else ``{}``
    (the environment variable, then torchvision's cache)."""
    if weights:
        return {"weights": weights}
    if recorded.get("kind") == "random":
        return {"random_weights": True, "seed": int(recorded.get("seed") or 0)}
    if recorded.get("kind") in ("file", "env") and recorded_weights_found(recorded):
        return {"weights": recorded["path"]}
    return {}


def weights_for_loading(recorded, fallback: Optional[str]) -> Optional[str]:
    """The weights file to pass when loading a saved model: None while :func:`weights_request` finds
    the recorded weights by itself, else ``fallback`` (e.g. the file the user chose for that
    backbone in the application)."""
    if not isinstance(recorded, Mapping) or recorded_weights_found(recorded):
        return None
    return fallback or None
