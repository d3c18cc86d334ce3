"""The BatchOut paper's CIFAR-10 network: a small VGG-style CNN.

Usage: ``create_model("paper_cifar", num_classes=10, in_channels=3, image_size=32, mean=m, std=s)``

Conv3-32, Conv3-64, MaxPool2, 3 x Conv3-64, MaxPool2, Dropout, FC512, FC512, Dropout,
FC(num_classes); ReLU after every conv and hidden FC, padding 1. The flatten size is
``64 * (image_size // 4) ** 2`` (4096 for CIFAR), so any image_size >= 4 works.

BatchOut sites: ``conv1``..``conv5``, ``fc1``, ``fc2`` on the pre-ReLU activations (the paper's
placement, the default) and ``features``, the input of the last FC, taken after fc2's ReLU and
before the last dropout (see lenet.py for why).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from batchout.layers import BatchOutSite
from batchout.models.common import Normalize, SiteNet, check_common, float_in
from batchout.models.registry import register_model


def _conv(i: int, c_in: int, c_out: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{i}", nn.Conv2d(c_in, c_out, 3, padding=1)),
        (f"bo_conv{i}", BatchOutSite(f"conv{i}")),
        (f"relu_conv{i}", nn.ReLU(inplace=True)),
    ]


def _fc(i: int, f_in: int, f_out: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"fc{i}", nn.Linear(f_in, f_out)),
        (f"bo_fc{i}", BatchOutSite(f"fc{i}")),
        (f"relu_fc{i}", nn.ReLU(inplace=True)),
    ]


class PaperCifarNet(SiteNet):
    default_batchout_sites = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2")
    final_site = "features"

    def __init__(self, num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
                 std: Sequence[float], dropout: float) -> None:
        flat = 64 * (image_size // 4) ** 2
        layers: list[tuple[str, nn.Module]] = [("normalize", Normalize(mean, std))]
        layers += _conv(1, in_channels, 32) + _conv(2, 32, 64) + [("pool1", nn.MaxPool2d(2))]
        layers += _conv(3, 64, 64) + _conv(4, 64, 64) + _conv(5, 64, 64) + [("pool2", nn.MaxPool2d(2))]
        layers += [("drop1", nn.Dropout(dropout)), ("flatten", nn.Flatten())]
        layers += _fc(1, flat, 512) + _fc(2, 512, 512)
        layers += [("bo_features", BatchOutSite("features")), ("drop2", nn.Dropout(dropout)),
                   ("fc", nn.Linear(512, num_classes))]
        super().__init__(OrderedDict(layers))


@register_model("paper_cifar")
def paper_cifar(num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
                std: Sequence[float], dropout: float = 0.5) -> nn.Module:
    """``dropout``: drop probability of both dropout layers (0.5)."""
    check_common(num_classes, in_channels, image_size, mean, std, min_size=4)
    p = float_in("dropout", dropout, 0.0, 0.99)
    return PaperCifarNet(num_classes, in_channels, image_size, mean, std, p)
