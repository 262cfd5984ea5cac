"""Every network that has a released definition, compared layer by layer with a transcription.

The transcriptions (``tests/releases/networks/*.yaml``) are data written by reading the authors'
code, each fact with the release's file and line; they are not generated from this project's
models, so a change to a model that moves it away from its release fails here.

A transcription lists the backbone's operations in execution order, as tokens:

* ``conv IN OUT K S P [dD] bias|nobias``: a convolution (``dD``: dilation D > 1);
* ``bn C [eps E]``: BatchNorm with its affine Scale (Caffe: BatchNorm + Scale), eps default 1e-5;
* ``relu``; ``maxpool K S P =OUT`` (OUT: the output size, so Caffe's rounding up is checked
  without caring how PyTorch spells it); ``cat`` (a concatenation); ``add`` (a residual sum);
* ``source``: the output of the token before it is the next detection source (the blob the
  release's ``mbox_source_layers`` names). A source that is not a layer's output (a Concat) is
  marked after the ``cat`` that makes it.

``init`` names the backbone convs' filler and each case's ``head`` its own (``caffe_xavier``:
Caffe's ``xavier``, U(+-sqrt(3 / fan_in)); ``gaussian_0.01``; ``xavier_uniform``: PyTorch's /
mmcv's; ``kaiming_fan_out``: He normal over fan_out, mmcv's ``kaiming_init``); every BN starts at
weight 1, bias 0 (Caffe's Scale fillers), every conv bias at 0.

Every token ends with ``@ <file>:<line>`` (where it is in the release). A ``repeat`` group expands
``layers`` ``times`` times, substituting ``{var}`` with ``start + i * step`` for each of its
``vars: {var: [start, step]}``. The test runs the model's backbone on the meta device (shapes only)
with hooks on its layers and compares the token sequences, then the head (L2Norm, kernel, bias,
BN epsilon per source) and the prior layout (maps, boxes per cell, sizes, steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from scratchdet.models import build_model
from scratchdet.models.layers import L2Norm
from scratchdet.ssd.priors import num_priors_per_cell

NETWORKS = Path(__file__).resolve().parent / "releases" / "networks"
TRANSCRIPTIONS = sorted(NETWORKS.glob("*.yaml"))
LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, L2Norm)
CAFFE_BN_EPS = 1e-5  # caffe.proto BatchNormParameter eps default (weiliu89/caffe ssd:798)


# --- the transcription ---------------------------------------------------------------------------


def _strip(token: str, where: str) -> str:
    text, at, cite = token.partition("@")
    if not at or ":" not in cite:
        raise AssertionError(f"{where}: token {token!r} does not cite the release's file:line")
    return " ".join(text.split())


def _expand(items: list[Any], where: str) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(_strip(item, where))
            continue
        times, variables = item["repeat"], item.get("vars", {})
        for i in range(times):
            values = {k: start + i * step for k, (start, step) in variables.items()}
            for token in _expand(item["layers"], where):
                out.append(token.format(**values))
    return out


def _expected(spec: dict[str, Any], where: str) -> tuple[list[str], list[int]]:
    """(tokens without the source markers, index of the token producing each source)."""
    tokens, sources = [], []
    for token in _expand(spec["layers"], where):
        if token == "source":
            sources.append(len(tokens) - 1)
        else:
            tokens.append(_normalise(token))
    return tokens, sources


def _normalise(token: str) -> str:
    parts = token.split()
    if parts[0] == "bn" and len(parts) == 3 and float(parts[2].removeprefix("eps")) == CAFFE_BN_EPS:
        return " ".join(parts[:2])
    return token


# --- the model's trace ---------------------------------------------------------------------------


def _token(module: nn.Module, out: Tensor) -> str:
    if isinstance(module, nn.Conv2d):
        (k, _), (s, _), (p, _), (d, _) = (
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
        )
        dil = f" d{d}" if d != 1 else ""
        bias = "bias" if module.bias is not None else "nobias"
        return f"conv {module.in_channels} {module.out_channels} {k} {s} {p}{dil} {bias}"
    if isinstance(module, nn.BatchNorm2d):
        eps = "" if module.eps == CAFFE_BN_EPS else f" eps {module.eps:g}"
        return f"bn {module.num_features}{eps}"
    if isinstance(module, nn.MaxPool2d):
        return f"maxpool {module.kernel_size} {module.stride} {module.padding} ={out.shape[-1]}"
    if isinstance(module, L2Norm):
        return f"l2norm {module.weight.numel()}"
    return "relu"


class _Trace(TorchFunctionMode):
    """Leaf layers via hooks; concatenations and sums between layers via the function mode."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []
        self.outputs: list[Tensor] = []
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.depth == 0:
            name = getattr(func, "__name__", "")
            if func is torch.cat:
                self._record("cat", out)
            elif name in ("add", "add_", "__add__", "__iadd__"):
                self._record("add", out)
        return out

    def _record(self, token: str, out: Tensor) -> None:
        self.tokens.append(token)
        self.outputs.append(out)

    def pre(self, module: nn.Module, args: Any) -> None:
        self.depth += 1

    def post(self, module: nn.Module, args: Any, out: Tensor) -> None:
        self.depth -= 1
        self._record(_token(module, out), out)


def _trace(backbone: nn.Module) -> tuple[list[str], list[int], list[Tensor]]:
    trace = _Trace()
    handles = []
    for m in backbone.modules():
        if isinstance(m, LEAVES):
            handles += [m.register_forward_pre_hook(trace.pre), m.register_forward_hook(trace.post)]
    try:
        with trace:
            sources = backbone(torch.empty(2, 3, 300, 300, device="meta"))
    finally:
        for h in handles:
            h.remove()
    # a source is the output of the last operation that returned that very tensor (an in-place
    # ReLU returns its input, so conv -> BN -> ReLU yields the ReLU)
    producers = [
        max(i for i, o in enumerate(trace.outputs) if o is s)
        if any(o is s for o in trace.outputs)
        else -1
        for s in sources
    ]
    return trace.tokens, producers, sources


# --- the comparison -------------------------------------------------------------------------------


def _first_difference(got: list[str], want: list[str]) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            lo = max(0, i - 4)
            return (
                f"operation {i}: model {g!r}, release {w!r}\n"
                f"  model:   {got[lo : i + 3]}\n  release: {want[lo : i + 3]}"
            )
    return f"model has {len(got)} operations, release {len(want)}"


def _cases() -> list[Any]:
    cases = []
    for path in TRANSCRIPTIONS:
        spec = yaml.safe_load(path.read_text())
        for case in spec["cases"]:
            cases.append(pytest.param(path, spec, case, id=f"{path.stem}-{case['num_classes']}"))
    return cases


def test_every_released_network_is_transcribed():
    names = {p.stem for p in TRANSCRIPTIONS}
    assert names >= {
        "dsod300",
        "ssd300_vgg16",
        "ssd300_vgg16_bn",
        "root_resnet18_ssd300",
        "scratchdet300_caffe",
        "scratchdet300_mmdet",
    }


@pytest.mark.parametrize("path, spec, case", _cases())
def test_network_matches_its_release(path, spec, case):
    where = path.name
    want_tokens, want_sources = _expected(spec, where)
    with torch.device("meta"):
        model = build_model(spec["model"], case["num_classes"], load_pretrained=False)
    got_tokens, got_sources, sources = _trace(model.backbone)
    assert got_tokens == want_tokens, f"{where}: {_first_difference(got_tokens, want_tokens)}"
    assert got_sources == want_sources, (
        f"{where}: the sources are the outputs of operations {got_sources} "
        f"({[got_tokens[i] for i in got_sources]}), the release's {want_sources}"
    )

    priors = spec["priors"]
    cfg = model.prior_config
    maps = tuple(priors["maps"])
    assert tuple(s.shape[-1] for s in sources) == maps == cfg.feature_maps
    assert num_priors_per_cell(cfg) == tuple(priors["per_cell"]) == model.head.anchors
    assert model.priors.shape[0] == priors["total"]
    sizes = case.get("sizes", priors)
    assert cfg.min_sizes == tuple(float(v) for v in sizes["min_sizes"])
    assert cfg.max_sizes == tuple(float(v) for v in sizes["max_sizes"])
    assert cfg.steps == tuple(float(v) for v in priors["steps"])
    assert cfg.aspect_ratios == tuple(tuple(float(a) for a in r) for r in priors["aspect_ratios"])
    assert cfg.variances == tuple(priors["variances"]) and cfg.clip == priors["clip"]

    head = case["head"]
    for i, (norm, loc, conf) in enumerate(zip(model.head.norms, model.head.loc, model.head.conf)):
        scale = head["l2norm"][i]
        if scale is None:
            assert isinstance(norm, nn.Identity), f"{where}: source {i} has an L2Norm"
        else:
            assert isinstance(norm, L2Norm) and norm.init_scale == scale
        for predictor in (loc, conf):
            conv = predictor[0] if isinstance(predictor, nn.Sequential) else predictor
            assert (conv.kernel_size[0], conv.padding[0]) == (head["kernel"], head["pad"])
            assert (conv.bias is not None) == head["bias"], f"{where}: head conv bias"
            bn = predictor[1] if isinstance(predictor, nn.Sequential) else None
            if head["bn_eps"] is None:
                assert bn is None, f"{where}: source {i} head has a BN"
            else:
                assert isinstance(bn, nn.BatchNorm2d) and bn.eps == head["bn_eps"] and bn.affine


def _check_init(convs: list[nn.Conv2d], rule: str, where: str) -> None:
    """Every conv's weights within the rule's bound (uniform fillers), and the spread of the
    largest one (the only one with enough weights for a tight estimate) as the rule says."""
    rule = _strip(rule, where)
    for conv in convs:
        w = conv.weight.detach()
        fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
        bound = {
            "caffe_xavier": (3 / fan_in) ** 0.5,
            "xavier_uniform": (6 / (fan_in + fan_out)) ** 0.5,
        }.get(rule)
        if bound is not None:
            assert w.abs().max().item() <= bound * (1 + 1e-6), f"{where}: {conv} beyond {rule}"
        if conv.bias is not None:
            assert torch.all(conv.bias == 0), f"{where}: {conv} bias not 0"
    conv = max(convs, key=lambda c: c.weight.numel())
    w = conv.weight.detach()
    fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
    std = {
        "caffe_xavier": (1 / fan_in) ** 0.5,
        "xavier_uniform": (2 / (fan_in + fan_out)) ** 0.5,
        "gaussian_0.01": 0.01,
        "kaiming_fan_out": (2 / fan_out) ** 0.5,
    }[rule]
    assert w.std().item() == pytest.approx(std, rel=0.05), f"{where}: {conv} is not {rule}"


@pytest.mark.parametrize("path", TRANSCRIPTIONS, ids=lambda p: p.stem)
def test_initialisation_matches_the_release(path):
    """The fillers each release declares, on a real (CPU) build of the network."""
    spec = yaml.safe_load(path.read_text())
    torch.manual_seed(0)
    for case in spec["cases"]:
        model = build_model(spec["model"], case["num_classes"], load_pretrained=False)
        backbone = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
        head = [m for m in model.head.modules() if isinstance(m, nn.Conv2d)]
        _check_init(backbone, spec["init"], path.name)
        _check_init(head, case["head"]["init"], path.name)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


def test_transcription_tokens_cite_the_release():
    """A token without its file:line is refused (the data must stay checkable by a reader)."""
    with pytest.raises(AssertionError, match="does not cite"):
        _expand(["conv 3 64 3 1 1 nobias"], "inline")
    assert _expand(
        [{"repeat": 2, "vars": {"c": [8, 4]}, "layers": ["bn {c} @ f.py:1", "relu @ f.py:2"]}],
        "inline",
    ) == ["bn 8", "relu", "bn 12", "relu"]
