"""What every model takes as input (docs/ARCHITECTURE.md): float32 ``RGB image - CAFFE_MEAN_RGB``,
0-255, no std division. The data pipeline subtracts this mean; the models (``ImageNetInput``) map
it to torchvision's ImageNet normalisation. Defined here only; no torch needed.
"""

from __future__ import annotations

__all__ = ["CAFFE_MEAN_RGB"]

CAFFE_MEAN_RGB: tuple[float, float, float] = (123.0, 117.0, 104.0)
"""Caffe SSD's ``mean_value: [104, 117, 123]`` (BGR), in this package's RGB order."""
