"""SGD parameter groups as the releases declare them, and the learning rate of each.

Caffe gives every parameter blob a ``lr_mult`` and a ``decay_mult`` (``ParamSpec``, default 1
and 1 where a layer declares none) and its ``SGDSolver`` steps each blob with
``local_rate = rate * lr_mult`` and ``local_decay = weight_decay * decay_mult``
(weiliu89/caffe ``src/caffe/solvers/sgd_solver.cpp``). The releases' net definitions declare
(file and line in ``tests/releases/recipes.yaml``, which the tests compare with ``RULES``):

- a convolution's bias, wherever one exists (SSD's VGG-16 and extra layers, heads without BN):
  ``lr_mult 2, decay_mult 0`` (``VGGNetBody``, ``ConvBNLayer`` without BN);
- the BN head's Scale layers (``ConvBNLayer`` with BN, which ``CreateMultiBoxHead`` uses), and the
  BN of SSD's ResNet-101 (``ResBody`` -> ``ConvBNLayer``): ``lr_mult 1, decay_mult 0``;
- the Scale layers written out without a ``param`` (DSOD's backbone and its extra layers,
  ScratchDet's Root-ResNets and VGG-16-BN) and the L2 normalisation's scale (``Normalize``):
  Caffe's default, ``1, 1``;
- every convolution weight: ``1, 1``.

``train.param_groups: caffe`` builds those groups from a built model by module type and place
(``head.`` or not); ``uniform`` gives every parameter ``1, 1`` (mmdetection's config, which has
no paramwise options, and this project before issue 19).

``set_lr`` sets each group's rate once per step. With ``train.sgd: caffe`` it also keeps
Caffe's momentum form: Caffe's history is ``v = m v + local_rate (g + local_decay w)``, ``w -= v``,
while ``torch.optim.SGD`` keeps ``b = m b + g + wd w``, ``w -= lr b``. The two agree while the
rate is constant (``v = lr b``); when the rate changes from ``lr0`` to ``lr1`` (a milestone, every
warm-up step) Caffe keeps ``v``, so ``set_lr`` rescales the momentum buffers by ``lr0 / lr1``,
one device op per group at a change and none otherwise: the fused SGD and the step stay free of
host syncs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from scratchdet.config import RunConfig
from scratchdet.models.layers import L2Norm

__all__ = ["ROLES", "RULES", "optimizer_param_groups", "parameter_roles", "set_lr"]

ROLES = ("weight", "bias", "bn_head", "bn_backbone", "bn_backbone_convbn", "l2norm")
"""What a parameter is, for the Caffe rules: a weight (convolution, or anything else), a
convolution's bias, a BN affine parameter in the head, in a backbone whose release writes its
Scale layers out (DSOD, Root-ResNets, VGG-16-BN) or builds them with ``ConvBNLayer`` (SSD's
ResNet-101), an L2 normalisation's scale."""

RULES: dict[str, tuple[float, float]] = {
    "weight": (1.0, 1.0),
    "bias": (2.0, 0.0),
    "bn_head": (1.0, 0.0),
    "bn_backbone": (1.0, 1.0),
    "bn_backbone_convbn": (1.0, 0.0),
    "l2norm": (1.0, 1.0),
}
"""(lr_mult, decay_mult) of each role under ``param_groups: caffe``."""


def _convbn_backbone(model_cfg: Mapping[str, Any] | None) -> bool:
    """Whether the backbone's BN comes from Caffe's ConvBNLayer (SSD's ResNet-50/101 bodies)."""
    if not model_cfg:
        return False
    from scratchdet.models.registry import resolve_config

    _, opts = resolve_config(model_cfg)
    return int(getattr(opts, "depth", 0) or 0) >= 50


def parameter_roles(
    model: nn.Module, model_cfg: Mapping[str, Any] | None = None
) -> Iterator[tuple[str, nn.Parameter, str]]:
    """(name, parameter, role) of every parameter of ``model``, each once."""
    convbn = _convbn_backbone(model_cfg)
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                role = (
                    "bn_head"
                    if mod_name.startswith("head.")
                    else "bn_backbone_convbn"
                    if convbn
                    else "bn_backbone"
                )
            elif isinstance(module, L2Norm):
                role = "l2norm"
            elif p_name == "bias":
                role = "bias"
            else:
                role = "weight"
            yield f"{mod_name}.{p_name}" if mod_name else p_name, param, role


def optimizer_param_groups(model: nn.Module, cfg: RunConfig) -> list[dict[str, Any]]:
    """SGD parameter groups of ``model`` under ``cfg.train.param_groups``, each with its
    ``lr_mult``, ``decay_mult`` and ``roles`` (kept in the optimizer's state for the record)."""
    t = cfg.train
    by_mults: dict[tuple[float, float], dict[str, Any]] = {}
    for _, param, role in parameter_roles(model, cfg.model if t.param_groups == "caffe" else None):
        lr_mult, decay_mult = RULES[role] if t.param_groups == "caffe" else (1.0, 1.0)
        group = by_mults.setdefault(
            (lr_mult, decay_mult),
            {
                "params": [],
                "lr_mult": lr_mult,
                "decay_mult": decay_mult,
                "roles": [],
                "lr": t.lr * lr_mult,
                "weight_decay": t.weight_decay * decay_mult,
                "caffe_sgd": t.sgd == "caffe",
            },
        )
        group["params"].append(param)
        if role not in group["roles"]:
            group["roles"].append(role)
    return list(by_mults.values())


@torch.no_grad()
def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr * lr_mult``; under Caffe's momentum form, rescale the
    momentum buffers of a group whose rate changes (see the module docstring). A rate of 0 on
    either side leaves the buffers alone (there is nothing to rescale from or to)."""
    for group in optimizer.param_groups:
        new = lr * group.get("lr_mult", 1.0)
        old = group["lr"]
        if group.get("caffe_sgd") and new != old and old > 0 and new > 0:
            buffers = [
                optimizer.state[p]["momentum_buffer"]
                for p in group["params"]
                if optimizer.state.get(p, {}).get("momentum_buffer") is not None
            ]
            if buffers:
                torch._foreach_mul_(buffers, old / new)
        group["lr"] = new
