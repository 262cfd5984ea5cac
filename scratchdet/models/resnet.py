"""ResNet backbones for SSD300: Root-ResNet-34 (ScratchDet300) as released in Caffe and in
mmdetection, the ResNet-18 root variants of ScratchDet Table 2 / Figure 3 and SSD300 ResNet-101
(DSOD Table 4).

Two block styles (``style``):

* ``caffe`` (ScratchDet's Caffe ``Resnet34rootV2_res`` / ``Resnet18rootV2``, the default): a
  pre-activation basic block, BN -> ReLU -> 3x3 -> BN -> ReLU -> 3x3, added to the raw input or,
  where the size or width changes, to a bias-free 1x1 projection of the pre-activated input (no
  BN on the shortcut). The detection sources are the second conv of the last block's branch,
  taken before the addition (``mbox_source_layers = ['conv4_12', 'conv5_6', ...]``), so the head
  sees raw conv outputs. Every conv is Caffe-xavier initialised.
* ``torchvision`` (ScratchDet's mmdetection ``SSDRES300``, torchvision's ResNets): post-activation
  ``BasicBlock`` / ``Bottleneck`` with conv + BN shortcuts; the sources are block outputs.

The root: ``root_convs`` stacked ``root_kernel`` convs of 64 channels (conv, BN, ReLU), the first
with ``root_stride``, and an optional max-pool. The first two sources are 38 and 19:

* root downsampling 2 (Root-ResNet, ResNet-18-A/-B): layer3 (38) and layer4 (19);
* root downsampling 4 (plain ResNet-18 / ResNet-101): layer2 (38) and layer4 (19), the last stage
  not striding. For ResNet-101 this is SSD's own recipe (``use_dilation_conv5=True``: stride 1,
  dilation 2); the basic blocks have no dilation, so ResNet-18/34 drop the stride only.
  ScratchDet does not say how its downsampling rows kept the sizes.

Then four extra blocks from 19x19 (``extras``): residual blocks of 128 channels with the map
sizes of the Caffe release (10, 5, 5, 5), of the mmdetection release (10, 5, 3, 3) or of the
paper (10, 5, 3, 1), or SSD's conv layers (10, 5, 3, 1; Root-ResNet-18 in the Caffe release).
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

from scratchdet.models.detector import SSD, select_priors
from scratchdet.models.dsod import bn_relu_conv
from scratchdet.models.heads import MultiBoxHead
from scratchdet.models.layers import (
    CenterCrop,
    chain_outputs,
    conv_out_size,
    init_caffe,
    init_kaiming,
)
from scratchdet.models.prediction import SSD300_EXTRAS, PlainExtras
from scratchdet.models.pretrained import ImageNetInput, load_state_dict
from scratchdet.models.resnet_options import ResNetOptions
from scratchdet.ssd.priors import num_priors_per_cell

__all__ = [
    "EXTRA_SPECS",
    "CaffeResNetBackbone",
    "PreActBlock",
    "ResNetBackbone",
    "ResidualExtras",
    "build_resnet",
]

_TORCHVISION: dict[int, tuple[Callable[..., ResNet], type[WeightsEnum]]] = {
    18: (resnet18, ResNet18_Weights),
    34: (resnet34, ResNet34_Weights),
    50: (resnet50, ResNet50_Weights),
    101: (resnet101, ResNet101_Weights),
}
ROOT_CHANNELS = 64  # what torchvision's layer1 expects
EXTRA_WIDTH = 128  # ScratchDet's residual extra blocks
CAFFE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # Resnet18rootV2, Resnet34rootV2_res
STAGE_WIDTHS = (64, 128, 256, 512)

# (stride, padding of the first 3x3) of the four residual extra blocks, per ``extras``; a
# stride-1 block has an identity shortcut (centre-cropped when unpadded), a stride-2 one a 1x1.
EXTRA_SPECS: dict[str, tuple[tuple[int, int], ...]] = {
    "caffe": ((2, 1), (2, 1), (1, 1), (1, 1)),  # conv6..conv9 of Resnet34rootV2_res: 10/5/5/5
    "mmdet": ((2, 1), (2, 1), (2, 1), (1, 1)),  # SSDRES300 layer5..layer8: 10/5/3/3
    "paper": ((2, 1), (2, 1), (2, 1), (1, 0)),  # the paper's 10/5/3/1
}


def _root(opts: ResNetOptions) -> nn.Sequential:
    k = opts.root_kernel
    layers: list[nn.Module] = [
        Conv2dNormActivation(
            3 if i == 0 else ROOT_CHANNELS,
            ROOT_CHANNELS,
            k,
            opts.root_stride if i == 0 else 1,
            k // 2,
            bias=False,
        )
        for i in range(opts.root_convs)
    ]
    if opts.maxpool:
        layers.append(nn.MaxPool2d(3, 2, 1) if opts.maxpool_kernel == 3 else nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class PreActBlock(nn.Module):
    """The Caffe release's basic block, pre-activation (``Resnet34rootV2_res``).

    ``forward`` returns ``(sum, branch)``: the sum feeds the next block, the branch (the second
    conv's raw output, before the addition) is what the release hands to the head when the block
    ends a stage. ``preact=False`` drops the leading BN-ReLU (the first block after pool1 in
    ``Resnet34rootV2_res``, whose input is already a ReLU output). The projection shortcut is a
    bias-free 1x1 conv of the pre-activated input, without BN; ``padding=0`` makes the first 3x3
    unpadded and centre-crops the identity shortcut (the paper's 3 -> 1 map).
    """

    def __init__(
        self, cin: int, cout: int, stride: int = 1, *, preact: bool = True, padding: int = 1
    ) -> None:
        super().__init__()
        self.preact: nn.Module = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True)) if preact else nn.Identity()
        )
        project = stride != 1 or cin != cout
        if project and padding != 1:
            raise ValueError("an unpadded block needs an identity shortcut")
        self.shortcut: nn.Module = (
            nn.Conv2d(cin, cout, 1, stride, bias=False)
            if project
            else CenterCrop(1)
            if padding == 0
            else nn.Identity()
        )
        self.project = project
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self.preact(x)
        short = self.shortcut(a if self.project else x)  # the release declares it first
        branch = self.conv2(self.relu(self.bn1(self.conv1(a))))
        return short + branch, branch


def _run_stage(blocks: nn.ModuleList, x: Tensor) -> tuple[Tensor, Tensor]:
    branch = x
    for block in blocks:
        x, branch = block(x)
    return x, branch


class ResidualExtras(nn.Module):
    """ScratchDet's extra blocks: residual, 128 channels, 19 -> 10 -> 5 -> then per ``specs``.

    Post-activation (``preact=False``): torchvision ``BasicBlock``s, a stride-2 block with a
    1x1/2 + BN projection shortcut (mmdetection's ``make_res_layer``), a stride-1 block with an
    identity one; the sources are the block outputs. Pre-activation (``preact=True``):
    ``PreActBlock``s as in ``Resnet34rootV2_res``; the sources are the branches before the
    addition. An unpadded first conv (the paper's 3 -> 1) keeps the centre pixel of the identity
    shortcut, so the block has exactly the parameters of a padded one.
    """

    def __init__(
        self,
        in_channels: int,
        width: int = EXTRA_WIDTH,
        specs: tuple[tuple[int, int], ...] = EXTRA_SPECS["paper"],
        *,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.specs, self.preact = tuple(specs), preact
        blocks: list[nn.Module] = []
        cin = in_channels
        for stride, padding in self.specs:
            if preact:
                blocks.append(PreActBlock(cin, width, stride, padding=padding))
            else:
                shortcut = (
                    nn.Sequential(conv1x1(cin, width, stride), nn.BatchNorm2d(width))
                    if stride != 1 or cin != width
                    else CenterCrop(1)
                    if padding == 0
                    else None
                )
                block = BasicBlock(cin, width, stride=stride, downsample=shortcut)
                if padding != 1:
                    block.conv1 = nn.Conv2d(cin, width, 3, stride, padding, bias=False)
                blocks.append(block)
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = (width,) * len(self.specs)

    def out_sizes(self, size: int) -> tuple[int, ...]:
        sizes = []
        for stride, padding in self.specs:
            size = conv_out_size(size, 3, stride=stride, padding=padding)
            sizes.append(size)
        return tuple(sizes)

    def forward(self, x: Tensor) -> list[Tensor]:
        if not self.preact:
            return chain_outputs(self.blocks, x)
        sources = []
        for block in self.blocks:
            x, branch = block(x)
            sources.append(branch)
        return sources


def _bn_unit(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return Conv2dNormActivation(cin, cout, kernel, stride, padding, bias=False)


class ResNetBackbone(nn.Module):
    """Post-activation: root + torchvision stages + extras -> [38, 19, extras...]."""

    def __init__(
        self, opts: ResNetOptions, weights: WeightsEnum | None = None, load_weights: bool = True
    ) -> None:
        super().__init__()
        make, _ = _TORCHVISION[opts.depth]
        bottleneck = opts.depth >= 50
        self.root_downsampling = opts.root_downsampling
        last_stride_1 = self.root_downsampling == 4
        tv = make(
            weights=None, replace_stride_with_dilation=[False, False, last_stride_1 and bottleneck]
        )
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
        if opts.extras != "ssd":
            self.extras: nn.Module = ResidualExtras(c19, specs=EXTRA_SPECS[opts.extras])
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


class CaffeResNetBackbone(nn.Module):
    """Pre-activation Root-ResNet-18/34 of ScratchDet's Caffe release -> [38, 19, extras...].

    Each source is the raw output of the second conv of a stage's last branch (``conv4_12`` and
    ``conv5_6`` for Root-ResNet-34), never a normalised sum. After layer4 the extras take the
    pre-activated sum: residual blocks (``Resnet34rootV2_res`` conv6..conv9) or SSD's layers as
    BN-ReLU-conv units (``Resnet18rootV2`` conv6_1..conv9_2, sources conv6_2..conv9_2 raw).
    """

    def __init__(self, opts: ResNetOptions) -> None:
        super().__init__()
        self.root = _root(opts)
        self.root_downsampling = opts.root_downsampling
        last_stride = 1 if self.root_downsampling == 4 else 2
        stages, cin = [], ROOT_CHANNELS
        for i, (n, width) in enumerate(zip(CAFFE_BLOCKS[opts.depth], STAGE_WIDTHS)):
            stride = (1, 2, 2, last_stride)[i]
            stages.append(
                nn.ModuleList(
                    PreActBlock(
                        cin if j == 0 else width,
                        width,
                        stride if j == 0 else 1,
                        preact=j > 0 or i > 0 or opts.pool1_bn,
                    )
                    for j in range(n)
                )
            )
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        if opts.extras == "ssd":
            self.extras: nn.Module = PlainExtras(cin, SSD300_EXTRAS, bn_relu_conv)
        else:
            self.extras = ResidualExtras(cin, specs=EXTRA_SPECS[opts.extras], preact=True)
        init_caffe(self)
        self.out_channels = (
            STAGE_WIDTHS[1 if self.root_downsampling == 4 else 2],
            cin,
            *self.extras.out_channels,
        )
        self.out_sizes = (38, 19, *self.extras.out_sizes(19))

    def forward(self, x: Tensor) -> list[Tensor]:
        x, _ = _run_stage(self.layer1, self.root(x))
        x, b2 = _run_stage(self.layer2, x)
        x, b3 = _run_stage(self.layer3, x)
        x, b4 = _run_stage(self.layer4, x)
        s38 = b2 if self.root_downsampling == 4 else b3
        return [s38, b4, *self.extras(x)]


def build_resnet(
    opts: ResNetOptions, num_classes: int, *, name: str = "", load_pretrained: bool = True
) -> SSD:
    """A ResNet-based SSD300 for ``num_classes`` object classes (+ background).

    Init per release. ``style: caffe``: Caffe-xavier convs, BN 1/0; the head as Caffe's
    ``ConvBNLayer`` (with BN: Gaussian std 0.01, no bias, BN eps 1e-3 + Scale; without:
    Caffe-xavier with a zero bias). ``style: torchvision`` (mmdetection): He (fan_out) for the
    backbone and extras, ``xavier_uniform`` for the head, head BN eps 1e-5. ``bn_head: null``
    follows the Caffe scripts: BN for COCO, none for VOC. ScratchDet300 has 24.55M learnable
    parameters with the VOC head of the Caffe release, 24.57M as released for mmdetection
    (ScratchDet recomputed: ~24.6M).
    """
    if opts.style == "caffe":
        backbone: nn.Module = CaffeResNetBackbone(opts)
    else:
        weights = _TORCHVISION[opts.depth][1].IMAGENET1K_V1 if opts.pretrained else None
        backbone = ResNetBackbone(opts, weights, load_pretrained)
    prior_config = select_priors(backbone.out_sizes, num_classes, opts.priors)
    bn_head = opts.bn_head
    if bn_head is None:  # ssd_coco.py: use_batchnorm = True; ssd_pascal.py: False
        bn_head = (opts.priors or ("coco" if num_classes == 80 else "voc")) == "coco"
    caffe = opts.style == "caffe"
    head = MultiBoxHead(
        backbone.out_channels,
        num_priors_per_cell(prior_config),
        num_classes + 1,
        bn=bn_head,
        l2norm=opts.l2norm,
        init="caffe" if caffe else "xavier",
        bn_eps=1e-3 if caffe else 1e-5,
    )
    return SSD(backbone, head, prior_config, name=name, config=opts.as_dict(name))
