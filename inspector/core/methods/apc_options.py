"""APC's options and its entry in the method catalog (no torch: the wizard and the CLI's parser
read them).  The method itself is in :mod:`.apc`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, List

from .costs import FineTunedBankCosts
from .catalog import Choices, MethodInfo, build_options, nested, option, options_dict, register
from .patchcore_options import PatchCoreOptions

NET = "inspector.core.methods.apc.net"


@dataclass
class APCOptions:
    """APC's fine-tuning parameters; PatchCore's options (``coreset_ratio``, ``index``, ...) pass
    through unchanged in ``patchcore`` (one flat dict on the command line: ``--option KEY=VALUE``).

    Defaults aim at a 200-image category in well under an hour on a 2-core CPU with the default
    backbone (see :mod:`.apc`'s docstring); on CUDA they take a minute or two."""

    # the CPU budget, see apc's docstring (on CUDA, 10-20 are affordable)
    epochs: int = option(3, "passes over the good images while fine-tuning (paper: not given); more is slower, "
                            "on a CPU the default already takes minutes", minimum=0,
                         label="Fine-tuning epochs")
    # magnetic_tile, 10 labelled: 1e-4 lost 1 point of image AUROC to PatchCore (0.947 vs 0.957),
    # 1e-5 gained 0.2 (0.959)
    lr: float = option(1e-5, "Adam learning rate of the encoder (pre-trained: small steps keep ImageNet's "
                             "features)", above=0.0)
    head_lr: float = option(1e-3, "Adam learning rate of the decoder and heads (trained from scratch)", above=0.0)
    weight_decay: float = option(0.0, "Adam weight decay", minimum=0.0)
    batch_size: int = option(8, "fine-tuning batch (also PatchCore's feature-extraction batch)", minimum=2)
    anomalous_fraction: float = option(0.25, "anomalous images per batch: ceil(batch x fraction), at least 1",
                                       above=0.0, below=1.0)
    w_cls: float = option(10.0, "weight of the classification loss (paper: L = 10 L_cls + L_seg + L_rec)",
                          minimum=0.0)
    w_seg: float = option(1.0, "weight of the segmentation loss", minimum=0.0)
    w_rec: float = option(1.0, "weight of the reconstruction loss", minimum=0.0)
    seg_loss: str = option("bce", "segmentation loss: bce (per pixel) or bce+dice (adds soft Dice)",
                           choices=Choices(NET, "SEG_LOSSES"))
    skips: int = option(2, "U-Net skip connections: 2 (the paper's default) or 4", choices=Choices(NET, "SKIPS"))
    decoder_width: int = option(16, "channels of the last decoder stage (doubling towards the encoder)", minimum=1)
    freeze_stride: int = option(4, "freeze the encoder up to this tap (4: stem + first stage; 0: none)",
                                choices=(0, 2, 4, 8, 16))
    train_bn: bool = option(False, "update the encoder's BatchNorm statistics (small batches: off)")
    augment: bool = option(True, "flips, rotation, shift, brightness/contrast")
    vflip: bool = option(True, "vertical flips (turn off for images with a fixed up/down)")
    degrees: float = option(10.0, "largest rotation, degrees", minimum=0.0)
    shift: float = option(0.05, "largest shift, fraction of the side", minimum=0.0, below=1.0)
    jitter: float = option(0.1, "largest brightness shift and contrast change", minimum=0.0)
    patchcore: PatchCoreOptions = nested(PatchCoreOptions, "PatchCore's options, for the bank built with the "
                                                           "tuned encoder")

    def __post_init__(self):
        if self.patchcore is None:
            self.patchcore = PatchCoreOptions()

    @classmethod
    def apc_fields(cls) -> List[str]:
        return [f.name for f in fields(cls) if f.name != "patchcore"]

    @classmethod
    def from_dict(cls, d: Dict) -> "APCOptions":
        opts = build_options(cls, d, "APC", "apc")
        opts.patchcore.batch_size = opts.batch_size
        return opts

    def to_dict(self) -> Dict:
        return options_dict(self)


register(MethodInfo(
    name="apc", label="APC", description="fine-tune on the labelled defects, then PatchCore",
    options=APCOptions, implementation="inspector.core.methods.apc", needs_anomalies=True,
    main_options=("epochs", "coreset_ratio"), costs=FineTunedBankCosts()))
