"""The seed's CIFAR ResNet: pre-activation bottleneck blocks in three stages.

Usage: ``create_model("resnet_bottleneck", num_classes=3, in_channels=3, image_size=32, mean=m, std=s,
blocks=[1, 1, 1])``

Stem Conv3x3-``width``; stages of ``blocks`` bottleneck blocks with base filters (w, 2w, 4w) and
expansion 4 (outputs 4w, 8w, 16w = 64, 128, 256 by default), strides 1, 2, 2; then BN -> ReLU ->
global average pool -> FC. The default (9, 9, 9) is the seed's network (83 layers, like the
pre-activation "v2" bottleneck ResNet of He et al. 2016 that it was ported from).

BatchOut sites: ``stage1``..``stage3`` after each stage (the residual sum, pre-activation) and
``features``, the pooled features fed to the FC (the default: the seed's final-layer placement).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from batchout.layers import BatchOutSite
from batchout.models.common import Normalize, SiteNet, check_common, int_tuple, positive_int
from batchout.models.registry import register_model

EXPANSION = 4


class PreActBottleneck(nn.Module):
    """BN-ReLU-Conv1x1 -> BN-ReLU-Conv3x3(stride) -> BN-ReLU-Conv1x1(x4), plus the shortcut
    (a strided 1x1 projection of the pre-activated input when the shape changes)."""

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * EXPANSION
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        needs_proj = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if needs_proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + skip


def _stage(c_in: int, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
    blocks = [PreActBottleneck(c_in, planes, stride)]
    blocks += [PreActBottleneck(planes * EXPANSION, planes, 1) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNetBottleneck(SiteNet):
    default_batchout_sites = ("features",)
    final_site = "features"

    def __init__(self, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                 blocks: tuple[int, ...], width: int) -> None:
        layers: list[tuple[str, nn.Module]] = [
            ("normalize", Normalize(mean, std)),
            ("stem", nn.Conv2d(in_channels, width, 3, padding=1, bias=False)),
        ]
        c_in = width
        for i, (n_blocks, stride) in enumerate(zip(blocks, (1, 2, 2), strict=True), start=1):
            planes = width * 2 ** (i - 1)
            layers += [(f"stage{i}", _stage(c_in, planes, n_blocks, stride)),
                       (f"bo_stage{i}", BatchOutSite(f"stage{i}"))]
            c_in = planes * EXPANSION
        layers += [("bn", nn.BatchNorm2d(c_in)), ("relu", nn.ReLU(inplace=True)),
                   ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("bo_features", BatchOutSite("features")), ("fc", nn.Linear(c_in, num_classes))]
        super().__init__(OrderedDict(layers))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


@register_model("resnet_bottleneck")
def resnet_bottleneck(num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
                      std: Sequence[float], blocks: Sequence[int] = (9, 9, 9), width: int = 16) -> nn.Module:
    """``blocks``: bottleneck blocks per stage; ``width``: base filters of the first stage."""
    check_common(num_classes, in_channels, image_size, mean, std)
    return ResNetBottleneck(num_classes, in_channels, mean, std, int_tuple("blocks", blocks, 3),
                            positive_int("width", width))
