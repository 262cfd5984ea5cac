"""The single-shot detector every family builds: backbone (list of source maps) + multibox head.

The model owns its prior layout (``prior_config`` and the ``priors`` buffer), so whoever trains,
decodes or evaluates it takes the priors from the model and cannot pair it with the wrong ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from scratchdet.models.heads import MultiBoxHead
from scratchdet.ssd.priors import (
    PriorConfig,
    dsod300_coco,
    dsod300_voc,
    make_priors,
    num_priors_per_cell,
    ssd300_coco,
    ssd300_voc,
)

__all__ = ["SSD", "select_priors"]


def select_priors(
    source_sizes: tuple[int, ...], num_classes: int, dataset: str | None = None
) -> PriorConfig:
    """The SSD300 prior layout for these sources: VOC or COCO sizes (COCO when ``dataset`` is
    ``None`` and there are 80 classes), DSOD's released layout when the last map is 2x2."""
    dataset = dataset or ("coco" if num_classes == 80 else "voc")
    if source_sizes == (38, 19, 10, 5, 3, 2):
        return dsod300_coco() if dataset == "coco" else dsod300_voc()
    return (ssd300_coco if dataset == "coco" else ssd300_voc)(feature_maps=source_sizes)


class SSD(nn.Module):
    """``model(images[B, 3, 300, 300]) -> (loc [B, P, 4], conf [B, P, C + 1])``, 0 = background.

    Args:
        backbone: returns the source maps, in order; must expose ``out_channels`` and
            ``out_sizes`` (the spatial size of each source for a 300x300 input).
        head: the multibox head, one predictor per source.
        prior_config: default boxes; its ``feature_maps`` must equal ``backbone.out_sizes`` and its
            priors per cell the head's anchors, else the flattened outputs would not line up.
        name, config: what was built, recorded for checkpoints and provenance.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: MultiBoxHead,
        prior_config: PriorConfig,
        *,
        name: str = "",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        sizes = tuple(backbone.out_sizes)
        if sizes != tuple(prior_config.feature_maps):
            raise ValueError(
                f"backbone sources are {sizes} but the priors expect {prior_config.feature_maps}"
            )
        if tuple(head.anchors) != num_priors_per_cell(prior_config):
            raise ValueError(
                f"head predicts {head.anchors} boxes per cell but the priors have "
                f"{num_priors_per_cell(prior_config)}"
            )
        if len(backbone.out_channels) != len(head.anchors):
            raise ValueError("backbone and head disagree on the number of sources")
        self.backbone = backbone
        self.head = head
        self.prior_config = prior_config
        self.name = name
        self.config: dict[str, Any] = dict(config or {})
        # Derived from prior_config, so not saved in checkpoints (a checkpoint is rebuilt from
        # its model config); still moves with .to(device).
        self.register_buffer("priors", make_priors(prior_config), persistent=False)

    @property
    def source_sizes(self) -> tuple[int, ...]:
        """Spatial size of each source map for a 300x300 input, e.g. (38, 19, 10, 5, 3, 1)."""
        return tuple(self.backbone.out_sizes)

    @property
    def source_channels(self) -> tuple[int, ...]:
        return tuple(self.backbone.out_channels)

    @property
    def num_outputs(self) -> int:
        """Class scores per prior, background included (``num_classes + 1`` of build_model)."""
        return self.head.num_outputs

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(images))
