"""VGG-19 with batch norm (configuration E of Simonyan & Zisserman 2015), sized for CIFAR.

Usage: ``create_model("vgg19", num_classes=10, in_channels=3, image_size=32, mean=m, std=s, width_mult=0.25)``

16 x (Conv3x3 -> BN -> ReLU) in five blocks separated by MaxPool2, then global average pool and
one FC (the usual CIFAR classifier: at 32x32 the last block is already 1x1). Pools use
``ceil_mode`` so smaller inputs (MNIST's 28x28) also reach 1x1 instead of 0x0. ``width_mult``
scales every conv's channel count (0.25 gives a quick 16..128-channel variant).

BatchOut sites: ``conv1``..``conv16`` after each conv's BN (pre-ReLU): the default placement, the
paper's (after every conv/FC pre-activation; the only FC here is the classifier, whose
pre-activation is the logits); and ``features``, the pooled input of the FC, where the final-layer
variant (``batchout_final``) mixes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from batchout.layers import BatchOutSite
from batchout.models.common import Normalize, SiteNet, check_common, float_in
from batchout.models.registry import register_model

CFG_E: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG19(SiteNet):
    default_batchout_sites = tuple(f"conv{i}" for i in range(1, 17))  # every conv pre-activation
    final_site = "features"

    def __init__(self, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                 width_mult: float) -> None:
        layers: list[tuple[str, nn.Module]] = [("normalize", Normalize(mean, std))]
        c_in, conv, pool = in_channels, 0, 0
        for v in CFG_E:
            if v == "M":
                pool += 1
                layers.append((f"pool{pool}", nn.MaxPool2d(2, ceil_mode=True)))
                continue
            conv += 1
            c_out = max(1, round(int(v) * width_mult))
            layers += [(f"conv{conv}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
                       (f"bn{conv}", nn.BatchNorm2d(c_out)),
                       (f"bo_conv{conv}", BatchOutSite(f"conv{conv}")),
                       (f"relu{conv}", nn.ReLU(inplace=True))]
            c_in = c_out
        layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("bo_features", BatchOutSite("features")), ("fc", nn.Linear(c_in, num_classes))]
        super().__init__(OrderedDict(layers))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


@register_model("vgg19")
def vgg19(num_classes: int, in_channels: int, image_size: int, mean: Sequence[float], std: Sequence[float],
          width_mult: float = 1.0) -> nn.Module:
    """``width_mult``: factor on every conv's channel count, in (0, 4]."""
    check_common(num_classes, in_channels, image_size, mean, std)
    mult = float_in("width_mult", width_mult, 0.0, 4.0, low_open=True)
    return VGG19(num_classes, in_channels, mean, std, mult)
