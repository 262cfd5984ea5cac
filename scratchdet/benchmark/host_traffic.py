"""Count what a piece of device code asks of the host: copies in, copies out, data-dependent ops.

On a GPU each of these stalls the pipeline: a blocking host-to-device copy waits for the stream,
and a data-dependent op (``item``, ``nonzero``, boolean-mask indexing, ``tolist``, ``unique``,
NMS) needs device values on the host before the next op can even be launched. The training step
is written to have none of them, the input pipeline one copy per micro-batch and detection a
constant few per batch; ``HostTrafficCounter`` checks it on any device, including ``meta``
(tensors without data, so the check runs on a CPU-only machine): it watches the dispatcher
(``TorchDispatchMode``) for copies between the CPU and ``device`` and for data-dependent ops, and
``torch.tensor``/``torch.as_tensor`` calls that build a ``device`` tensor from host data
(``TorchFunctionMode``; they copy without going through the dispatcher). On ``meta`` a
data-dependent op cannot run; it is counted and answered with a stand-in result (``nonzero``:
every element; NMS, ``topk_nms``: nothing kept) so that the code under test carries on. On CUDA the
training benchmark also runs a step under
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostTraffic", "HostTrafficCounter"]

_COPIES = {
    "aten._to_copy.default",
    "aten.copy_.default",
    "aten._copy_from.default",
    "aten._copy_from_and_resize.default",
}
_DATA_DEPENDENT = {
    "aten._local_scalar_dense.default",
    "aten.nonzero.default",
    "aten.nonzero_static.default",
    "aten.masked_select.default",
    "aten._unique2.default",
    "aten.unique_dim.default",
    "aten.unique_consecutive.default",
    "aten.repeat_interleave.Tensor",
    "torchvision.nms.default",
    "scratchdet.topk_nms.default",
}


@dataclass
class HostTraffic:
    """What was seen: one entry per event, naming the op."""

    to_device: list[str] = field(default_factory=list)
    to_host: list[str] = field(default_factory=list)
    data_dependent: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "to_device": len(self.to_device),
            "to_host": len(self.to_host),
            "data_dependent": len(self.data_dependent),
        }


def _devices(args: Any) -> list[torch.device]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a.device)
        elif isinstance(a, (list, tuple)):
            out.extend(_devices(a))
    return out


def _is_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class _Dispatch(TorchDispatchMode):
    def __init__(self, traffic: HostTraffic, device: torch.device):
        super().__init__()
        self.traffic, self.device = traffic, device

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        if name in _COPIES:
            if self._copy(name, args, kwargs) == "to_host" and self.device.type == "meta":
                if name == "aten._to_copy.default":  # meta holds no data: a zero host tensor
                    return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
                return args[0]
        elif name in _DATA_DEPENDENT or (name == "aten.index.Tensor" and _is_bool_index(args)):
            self.traffic.data_dependent.append(name)
            if self.device.type == "meta":
                return _fake_result(name, args)
        elif name == "aten.index_put_.default" and _is_bool_index(args):
            self.traffic.data_dependent.append(name)
        return func(*args, **kwargs)

    def _copy(self, name: str, args: tuple, kwargs: dict) -> str | None:
        if name == "aten._to_copy.default":
            src = args[0].device
            dst = torch.device(kwargs.get("device") or src)
        else:  # copy_(self=dst, src)
            dst, src = args[0].device, args[1].device
        if src.type == "cpu" and dst.type == self.device.type != "cpu":
            self.traffic.to_device.append(name)
            return "to_device"
        if src.type == self.device.type != "cpu" and dst.type == "cpu":
            self.traffic.to_host.append(name)
            return "to_host"
        return None


def _fake_result(name: str, args: tuple) -> Any:
    x = args[0]
    if name == "aten._local_scalar_dense.default":
        return False if x.dtype == torch.bool else 0
    if name.startswith("aten.nonzero"):  # every element: what follows runs on its full size
        return torch.ones(x.shape, dtype=torch.bool).nonzero().to(x.device)
    if name in ("torchvision.nms.default", "scratchdet.topk_nms.default"):
        return torch.empty(0, dtype=torch.long, device=x.device)
    if name == "aten.index.Tensor":
        return x.new_empty((0, *tuple(x.shape[1:])))
    return x.new_empty((0,))


class _Function(TorchFunctionMode):
    def __init__(self, traffic: HostTraffic, device: torch.device):
        super().__init__()
        self.traffic, self.device = traffic, device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and self.device.type != "cpu":
            target = kwargs.get("device")
            data = args[0] if args else kwargs.get("data")
            if (
                target is not None
                and torch.device(target).type == self.device.type
                and not (isinstance(data, torch.Tensor) and data.device.type != "cpu")
            ):
                self.traffic.to_device.append(f"torch.{func.__name__}")
        return func(*args, **kwargs)


class HostTrafficCounter:
    """``with HostTrafficCounter(device) as traffic: ...`` then ``traffic.counts()``."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.traffic = HostTraffic()
        self._modes = (_Function(self.traffic, self.device), _Dispatch(self.traffic, self.device))

    def __enter__(self) -> HostTraffic:
        for mode in self._modes:
            mode.__enter__()
        return self.traffic

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
