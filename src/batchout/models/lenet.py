"""The BatchOut paper's MNIST network (a LeNet-style CNN), for any image size and channel count.

Usage: ``create_model("lenet", num_classes=10, in_channels=1, image_size=28, mean=[0.13], std=[0.31])``

Conv5x5-32 -> ReLU -> MaxPool2 -> Conv5x5-32 -> ReLU -> MaxPool2 -> Dropout -> FC256 -> ReLU ->
Dropout -> FC(num_classes). Convolutions use padding 2 ("same"), so any image_size >= 4 works;
the flatten size is ``32 * (image_size // 4) ** 2`` (1568 for MNIST).

BatchOut sites: ``conv1``, ``conv2``, ``fc1`` on the pre-ReLU activations (the paper's placement,
the default) and ``features``, the input of the last FC. ``features`` sits after fc1's ReLU and
BEFORE the last dropout: the direction toward the partner is then taken between clean feature
vectors, not between two independently dropped-out ones (whose difference would be mostly the
dropout noise).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from batchout.layers import BatchOutSite
from batchout.models.common import Normalize, SiteNet, check_common, float_in
from batchout.models.registry import register_model


class LeNet(SiteNet):
    default_batchout_sites = ("conv1", "conv2", "fc1")
    final_site = "features"

    def __init__(self, num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
                 std: Sequence[float], dropout: float) -> None:
        flat = 32 * (image_size // 4) ** 2
        super().__init__(OrderedDict([
            ("normalize", Normalize(mean, std)),
            ("conv1", nn.Conv2d(in_channels, 32, 5, padding=2)),
            ("bo_conv1", BatchOutSite("conv1")),
            ("relu1", nn.ReLU(inplace=True)),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(32, 32, 5, padding=2)),
            ("bo_conv2", BatchOutSite("conv2")),
            ("relu2", nn.ReLU(inplace=True)),
            ("pool2", nn.MaxPool2d(2)),
            ("drop1", nn.Dropout(dropout)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(flat, 256)),
            ("bo_fc1", BatchOutSite("fc1")),
            ("relu3", nn.ReLU(inplace=True)),
            ("bo_features", BatchOutSite("features")),
            ("drop2", nn.Dropout(dropout)),
            ("fc", nn.Linear(256, num_classes)),
        ]))


@register_model("lenet")
def lenet(num_classes: int, in_channels: int, image_size: int, mean: Sequence[float], std: Sequence[float],
          dropout: float = 0.5) -> nn.Module:
    """``dropout``: drop probability of both dropout layers (the paper's 0.5)."""
    check_common(num_classes, in_channels, image_size, mean, std, min_size=4)
    p = float_in("dropout", dropout, 0.0, 0.99)
    return LeNet(num_classes, in_channels, image_size, mean, std, p)
