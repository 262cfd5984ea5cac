"""ResNet backbones for SSD300: the ResNet-18 root variants of ScratchDet Table 2 / Figure 3,
Root-ResNet-34 (ScratchDet300) and SSD300 ResNet-101 (DSOD Table 4).

The residual stages are torchvision's (``BasicBlock`` / ``Bottleneck``); only the root changes:
``root_convs`` stacked ``root_kernel`` convs of 64 channels, the first with ``root_stride``, and an
optional max-pool. Sources are always 38, 19, 10, 5, 3, 1, as in the paper ("no matter how we
modify the structure, the spatial sizes of our selected detection layers are the same"):

* root downsampling 2 (Root-ResNet, ResNet-18-A/-B): layer3 (38) and layer4 (19);
* root downsampling 4 (plain ResNet-18 / ResNet-101): layer2 (38) and layer4 (19), the last stage
  not striding. For ResNet-101 this is SSD's own recipe (``use_dilation_conv5=True``: stride 1,
  dilation 2); torchvision's ``BasicBlock`` has no dilation, so ResNet-18/34 drop the stride only.
  ScratchDet does not say how its downsampling rows kept the sizes.

Then four extra blocks from 19x19: SSD's layers (``extras: ssd``; Root-ResNet-18 in ScratchDet's
Caffe release) or ScratchDet's residual blocks of 128 channels (``extras: residual``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.models import (
    ResNet,
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    WeightsEnum,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)
from torchvision.models.resnet import BasicBlock, conv1x1
from torchvision.ops import Conv2dNormActivation

from scratchdet.ssd.priors import num_priors_per_cell

from .detector import SSD, select_priors
from .heads import MultiBoxHead
from .layers import CenterCrop, chain_outputs, conv_out_size, init_kaiming
from .prediction import SSD300_EXTRAS, PlainExtras
from .pretrained import ImageNetInput, load_state_dict
from .resnet_options import ResNetOptions

__all__ = ["ResNetBackbone", "ResidualExtras", "build_resnet"]

_TORCHVISION: dict[int, tuple[Callable[..., ResNet], type[WeightsEnum]]] = {
    18: (resnet18, ResNet18_Weights),
    34: (resnet34, ResNet34_Weights),
    50: (resnet50, ResNet50_Weights),
    101: (resnet101, ResNet101_Weights),
}
ROOT_CHANNELS = 64  # what torchvision's layer1 expects
EXTRA_WIDTH = 128  # ScratchDet's residual extra blocks


def _root(opts: ResNetOptions) -> nn.Sequential:
    k = opts.root_kernel
    layers: list[nn.Module] = [
        Conv2dNormActivation(3 if i == 0 else ROOT_CHANNELS, ROOT_CHANNELS, k,
                             opts.root_stride if i == 0 else 1, k // 2, bias=False)
        for i in range(opts.root_convs)]
    if opts.maxpool:
        layers.append(nn.MaxPool2d(3, 2, 1) if opts.maxpool_kernel == 3 else nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class ResidualExtras(nn.Module):
    """ScratchDet's extra blocks: residual, 128 channels, 19 -> 10 -> 5 -> 3 -> 1.

    Blocks 1-3 are torchvision ``BasicBlock``s with stride 2 and a 1x1/2 projection shortcut (the
    paper's "one branch 1x1 conv stride 2, the other 3x3 stride 2 + 3x3 stride 1"). Both releases
    stop at 3x3 (mmdetection: a 4th stride-1 block, 3 -> 3; Caffe: stride-1 blocks after 5x5); the
    paper's 1x1 map is reached here as SSD does, with an unpadded 3x3 conv: the 4th block's first
    conv is unpadded (3 -> 1) and its identity shortcut keeps the centre pixel, so it has exactly
    the parameters of mmdetection's 4th block.
    """

    def __init__(self, in_channels: int, width: int = EXTRA_WIDTH) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        cin = in_channels
        for _ in range(3):
            shortcut = nn.Sequential(conv1x1(cin, width, 2), nn.BatchNorm2d(width))
            blocks.append(BasicBlock(cin, width, stride=2, downsample=shortcut))
            cin = width
        last = BasicBlock(width, width, downsample=CenterCrop(1))
        last.conv1 = nn.Conv2d(width, width, 3, stride=1, padding=0, bias=False)
        blocks.append(last)
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = (width,) * 4

    def out_sizes(self, size: int) -> tuple[int, ...]:
        sizes = []
        for _ in range(3):
            size = conv_out_size(size, 3, 2, 1)
            sizes.append(size)
        sizes.append(conv_out_size(size, 3))
        return tuple(sizes)

    def forward(self, x: Tensor) -> list[Tensor]:
        return chain_outputs(self.blocks, x)


def _bn_unit(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return Conv2dNormActivation(cin, cout, kernel, stride, padding, bias=False)


class ResNetBackbone(nn.Module):
    """Root + torchvision stages + extras -> sources at 38, 19, 10, 5, 3, 1."""

    def __init__(self, opts: ResNetOptions, weights: WeightsEnum | None = None,
                 load_weights: bool = True) -> None:
        super().__init__()
        make, _ = _TORCHVISION[opts.depth]
        bottleneck = opts.depth >= 50
        self.root_downsampling = opts.root_downsampling
        last_stride_1 = self.root_downsampling == 4
        tv = make(weights=None,
                  replace_stride_with_dilation=[False, False, last_stride_1 and bottleneck])
        if last_stride_1 and not bottleneck:
            tv.layer4[0].conv1.stride = (1, 1)
            tv.layer4[0].downsample[0].stride = (1, 1)
        self.input = ImageNetInput() if weights is not None else nn.Identity()
        if opts.standard_root:
            self.root = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool)
        else:
            self.root = _root(opts)
        self.layer1, self.layer2 = tv.layer1, tv.layer2
        self.layer3, self.layer4 = tv.layer3, tv.layer4
        expansion = 4 if bottleneck else 1
        c38 = (128 if last_stride_1 else 256) * expansion
        c19 = 512 * expansion
        if opts.extras == "residual":
            self.extras: nn.Module = ResidualExtras(c19)
        else:
            self.extras = PlainExtras(c19, SSD300_EXTRAS, _bn_unit)
        init_kaiming(self.root)
        init_kaiming(self.extras)
        self.out_channels = (c38, c19, *self.extras.out_channels)
        self.out_sizes = (38, 19, *self.extras.out_sizes(19))
        if weights is not None and load_weights:
            tv.load_state_dict(load_state_dict(weights))  # tv shares its modules with self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.layer1(self.root(self.input(x)))
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        s38 = c2 if self.root_downsampling == 4 else c3
        return [s38, c4, *self.extras(c4)]


def build_resnet(opts: ResNetOptions, num_classes: int, *, name: str = "",
                 load_pretrained: bool = True) -> SSD:
    """A ResNet-based SSD300 for ``num_classes`` object classes (+ background).

    Init follows ScratchDet's mmdetection release: He (fan_out) for the backbone and extras,
    ``xavier_uniform`` for the head, BN 1/0. Root-ResNet-34 (ScratchDet300) has 24.57M learnable
    parameters for 21 outputs (ScratchDet recomputed: ~24.6M).
    """
    weights = _TORCHVISION[opts.depth][1].IMAGENET1K_V1 if opts.pretrained else None
    backbone = ResNetBackbone(opts, weights, load_pretrained)
    prior_config = select_priors(backbone.out_sizes, num_classes, opts.priors)
    head = MultiBoxHead(backbone.out_channels, num_priors_per_cell(prior_config), num_classes + 1,
                        bn=opts.bn_head, l2norm=opts.l2norm, init="xavier")
    return SSD(backbone, head, prior_config, name=name, config=opts.as_dict(name))
