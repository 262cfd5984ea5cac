"""SSD300 with the truncated VGG-16 of the SSD paper (and ScratchDet Table 1, DSOD Table 4).

Backbone = torchvision's VGG-16 (or VGG-16-BN) features up to conv5_3, with SSD's changes: pool3
rounds up (75 -> 38), pool5 is 3x3/1, and fc6/fc7 become a 3x3 conv with dilation 6 and a 1x1
conv of 1024 channels. Sources: conv4_3 (38), fc7 (19), then SSD's extra layers (10, 5, 3, 1) or
DSOD's dense prediction structure (10, 5, 3, 2; DSOD Table 4 "dense").

With ``bn_backbone`` the layout is ScratchDet's Caffe ``VGGNetBNBody`` (``bn_layout: caffe``): every
conv (trunk, fc6, fc7, extras) is bias-free and followed by BN-Scale-ReLU, and each of pool1..pool5
is followed by a BN-Scale-ReLU too; ``bn_layout: torchvision`` is torchvision's ``vgg16_bn``
(conv biases, nothing after the pools).

From ImageNet weights, fc6/fc7 are decimated from the classifier exactly as SSD's
``VGG_ILSVRC_16_layers_fc_reduced`` was: every 4th output unit, every 3rd kernel tap.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights, WeightsEnum
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops import Conv2dNormActivation

from scratchdet.models.detector import SSD, select_priors
from scratchdet.models.heads import MultiBoxHead
from scratchdet.models.layers import init_caffe
from scratchdet.models.prediction import (
    DENSE_WIDTHS,
    SSD300_EXTRAS,
    ConvUnit,
    DenseExtras,
    PlainExtras,
)
from scratchdet.models.pretrained import ImageNetInput, load_state_dict
from scratchdet.models.vgg_options import VGGOptions
from scratchdet.ssd.priors import num_priors_per_cell

__all__ = ["VGG16Backbone", "build_vgg", "reduce_fc6", "reduce_fc7"]


def reduce_fc6(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """VGG's fc6 ``Linear(C*7*7 -> N)`` as a 7x7 conv, decimated to N/4 x C x 3 x 3.

    Every 4th output unit and every 3rd kernel tap; with pool5 at stride 1 the kept taps sit 6
    pixels apart, hence fc6's dilation 6 (SSD's ``VGG_ILSVRC_16_layers_fc_reduced``).
    """
    conv = weight.view(weight.shape[0], -1, 7, 7)
    return conv[::4, :, ::3, ::3].contiguous(), bias[::4].contiguous()


def reduce_fc7(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """VGG's fc7 ``Linear(N -> N)`` as a 1x1 conv keeping every 4th input and output unit."""
    w = weight[::4, ::4]
    return w.reshape(*w.shape, 1, 1).contiguous(), bias[::4].contiguous()


def _unit(bn: bool) -> ConvUnit:
    """conv -> [BN] -> ReLU; the conv has a bias only without BN."""

    def make(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Module:
        return Conv2dNormActivation(
            cin, cout, kernel, stride, padding, norm_layer=nn.BatchNorm2d if bn else None
        )

    return make


def _caffe_bn_layout(features: list[nn.Module]) -> list[nn.Module]:
    """``VGGNetBNBody``: drop every conv bias (BN follows) and add BN-ReLU after each pool."""
    out: list[nn.Module] = []
    for i, m in enumerate(features):
        out.append(m)
        if isinstance(m, nn.Conv2d):
            m.register_parameter("bias", None)
        elif isinstance(m, nn.MaxPool2d):
            channels = next(
                c.out_channels for c in reversed(features[:i]) if isinstance(c, nn.Conv2d)
            )
            out += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    return out


class VGG16Backbone(nn.Module):
    """Truncated VGG-16 (+ BN) -> [conv4_3, fc7, extras...].

    With ``weights`` the input is first mapped to torchvision's ImageNet normalisation and, if
    ``load_weights``, the trunk and fc6/fc7 are filled from those weights; the rest stays
    Caffe-xavier initialised.
    """

    def __init__(
        self,
        bn: bool = False,
        *,
        prediction: str = "plain",
        weights: WeightsEnum | None = None,
        load_weights: bool = True,
        width: float = 1.0,
        bn_layout: str = "caffe",
    ) -> None:
        super().__init__()
        unit = _unit(bn)

        def w(channels: int) -> int:
            return max(8, round(channels * width))

        # torchvision's layer order; `width` scales every conv (1 = VGG-16)
        features = list(make_layers([v if v == "M" else w(v) for v in cfgs["D"]], batch_norm=bn))
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        features[pools[2]].ceil_mode = True  # pool3: 75 -> 38 as Caffe rounds
        pool5: list[nn.Module] = [nn.MaxPool2d(3, 1, 1)]  # pool5: keeps 19x19
        trunk = features[: pools[4]]
        if bn and bn_layout == "caffe":
            trunk = _caffe_bn_layout(trunk)
            pool5 += [nn.BatchNorm2d(w(512)), nn.ReLU(inplace=True)]
        cut = trunk.index(features[pools[3]])  # pool4 starts the fc7 part
        self.input = ImageNetInput() if weights is not None else nn.Identity()
        self.conv4_3 = nn.Sequential(*trunk[:cut])
        self.fc7 = nn.Sequential(
            *trunk[cut:],
            *pool5,
            Conv2dNormActivation(
                w(512),
                w(1024),
                3,
                1,
                padding=6,
                dilation=6,  # fc6 (atrous)
                norm_layer=nn.BatchNorm2d if bn else None,
            ),
            unit(w(1024), w(1024), 1, 1, 0),  # fc7
        )
        if prediction == "dense":
            self.extras: nn.Module = DenseExtras(w(1024), [w(c) for c in DENSE_WIDTHS], unit)
        else:
            specs = [(w(mid), w(out), stride, pad) for mid, out, stride, pad in SSD300_EXTRAS]
            self.extras = PlainExtras(w(1024), specs, unit)
        self.out_channels = (w(512), w(1024), *self.extras.out_channels)
        self.out_sizes = (38, 19, *self.extras.out_sizes(19))
        init_caffe(self)
        if weights is not None and load_weights:
            self._load_imagenet(load_state_dict(weights), features)

    @property
    def _fc6(self) -> nn.Conv2d:
        return self.fc7[-2][0]

    @property
    def _fc7(self) -> nn.Conv2d:
        return self.fc7[-1][0]

    def _load_imagenet(self, state: dict[str, Tensor], features: list[nn.Module]) -> None:
        trunk = nn.Sequential(*features)  # same module objects as in conv4_3 / fc7
        own = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        for i, m in enumerate(features):
            if isinstance(m, nn.Conv2d) and m.bias is None:  # Caffe layout: fold into the BN
                bias = own.pop(f"{i}.bias")
                own[f"{i + 1}.running_mean"] = own[f"{i + 1}.running_mean"] - bias
        trunk.load_state_dict(own)
        fc6_w, fc6_b = reduce_fc6(state["classifier.0.weight"], state["classifier.0.bias"])
        fc7_w, fc7_b = reduce_fc7(state["classifier.3.weight"], state["classifier.3.bias"])
        self._fc6.weight.data.copy_(fc6_w)
        self._fc7.weight.data.copy_(fc7_w)
        if self._fc6.bias is not None:  # no bias when BN follows
            self._fc6.bias.data.copy_(fc6_b)
            self._fc7.bias.data.copy_(fc7_b)

    def forward(self, x: Tensor) -> list[Tensor]:
        c4 = self.conv4_3(self.input(x))
        f7 = self.fc7(c4)
        return [c4, f7, *self.extras(f7)]


def build_vgg(
    opts: VGGOptions, num_classes: int, *, name: str = "", load_pretrained: bool = True
) -> SSD:
    """SSD300-VGG16 for ``num_classes`` object classes (+ background); 26.29M parameters for 21.

    ``load_pretrained=False`` builds the same network without fetching weights (used when a
    checkpoint is about to be loaded into it).
    """
    weights: WeightsEnum | None = None
    if opts.pretrained:
        weights = (
            VGG16_BN_Weights.IMAGENET1K_V1 if opts.bn_backbone else VGG16_Weights.IMAGENET1K_V1
        )
    backbone = VGG16Backbone(
        opts.bn_backbone,
        prediction=opts.prediction,
        weights=weights,
        load_weights=load_pretrained,
        width=opts.width,
        bn_layout=opts.bn_layout,
    )
    prior_config = select_priors(backbone.out_sizes, num_classes, opts.priors)
    head = MultiBoxHead(
        backbone.out_channels,
        num_priors_per_cell(prior_config),
        num_classes + 1,
        bn=opts.bn_head,
        l2norm=opts.l2norm,
        init="caffe",
        bn_eps=1e-3,
    )
    return SSD(backbone, head, prior_config, name=name, config=opts.as_dict(name))
