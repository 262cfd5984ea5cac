"""A torch Dataset over the internal annotation format.

Images are decoded to uint8 RGB tensors `[3, H, W]` with torchvision's decoder (libjpeg-turbo,
handles grayscale and CMYK JPEG, PNG, WebP, GIF) and with Pillow for anything else. 16-bit
samples (16-bit PNG, 16-bit grey TIFF) become their top byte on both paths. EXIF orientation is
never applied: annotations are in the stored pixel orientation (`data check` warns of the tag). A
truncated or
unreadable file, or one whose size disagrees with the JSON (the boxes would then be wrong), is a
DataError naming the file.

Transform contract: `transform(image, boxes, labels) -> (image, boxes, labels)`, where boxes are
float32 xyxy pixels `[N, 4]` and `labels` an int64 `[N]` tensor that the transform must filter and
reorder together with the boxes, and may not otherwise interpret. The dataset passes the row
indices 0..N-1 as `labels`, then looks up the real labels and `difficult` flags with the indices
that come back, so every per-box field stays aligned with the boxes a random crop keeps.

The dataset holds only numpy arrays (no file handles, no per-image Python objects), so it forks
into DataLoader workers cheaply.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from scratchdet.data.annotations import BoxTable, image_dir, load_annotations, validate_annotations
from scratchdet.errors import DataError

__all__ = ["DetectionDataset", "Transform", "read_image"]

Transform = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]

try:  # torchvision >= 0.29 warns that its image codecs move to torchcodec; they still work.
    from torchvision.io import ImageReadMode, decode_image

    warnings.filterwarnings(
        "ignore",
        message="The image decoding and encoding capabilities of TorchVision are deprecated",
        category=DeprecationWarning,
    )
except ImportError:  # a future torchvision without them: Pillow only
    decode_image = None


def _decode_pil(path: str) -> torch.Tensor:
    with Image.open(path) as im:
        if im.mode.startswith("I;16"):  # 16-bit grey: the top byte, as for 16-bit PNGs below
            grey = (np.array(im).astype(np.uint16) >> 8).astype(np.uint8)
            rgb = np.repeat(grey[:, :, None], 3, axis=2)
        elif im.mode in ("I", "F"):  # 32-bit samples: no one scale maps them to 0-255
            raise DataError(
                path,
                f"32-bit {im.mode!r} samples are not supported; convert the "
                "image to 8 bits per channel",
            )
        else:
            rgb = np.array(im.convert("RGB"))  # load() raises OSError on a truncated file
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """16-bit samples (a 16-bit PNG decodes to uint16, values up to 65535) -> their top byte,
    torchvision's own conversion (`to_dtype(..., scale=True)`: a right shift by 8), so that such
    an image is the 8-bit image it shows instead of pixel values the network never saw."""
    if image.dtype == torch.uint8:
        return image
    from torchvision.transforms.v2.functional import to_dtype

    return to_dtype(image, torch.uint8, scale=True)


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor [3, H, W]; DataError if it cannot be decoded."""
    path = str(path)
    try:
        if decode_image is not None:
            with open(path, "rb") as fh:
                raw = fh.read()
            if not raw:
                raise DataError(path, "image file is empty")
            data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            try:
                # EXIF orientation is not applied (here, in Pillow's fallback and in the readers'
                # header sizes): VOC boxes are in the stored pixel orientation.
                return _to_uint8(
                    decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=False)
                )
            except RuntimeError as exc:  # decoding bytes: the message holds no path
                if "truncated" in str(exc) or "incomplete" in str(exc):
                    raise DataError(path, "image file is truncated") from None
                # an unsupported format (e.g. BMP, TIFF): let Pillow try
        return _decode_pil(path)
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except (OSError, ValueError, RuntimeError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot decode image: {exc}") from None


class DetectionDataset(torch.utils.data.Dataset):
    """Images and targets of one split.

    `__getitem__` returns `(image, target)`: image uint8 [3, H, W] RGB (or whatever the transform
    makes of it) and target = dict(boxes float32 [N, 4] xyxy pixels, labels int64 [N] in 1..C,
    difficult bool [N], image_id int, orig_size (H, W)). Crowd annotations (COCO `iscrowd`) are
    left out unless `keep_crowd`: SSD training does not match priors to them.
    """

    def __init__(
        self,
        annotations: dict | str | Path,
        transform: Transform | None = None,
        keep_crowd: bool = False,
    ):
        if isinstance(annotations, dict):
            self.source = "<annotations>"
            ds = validate_annotations(annotations)
            root = image_dir(ds)
        else:
            self.source = str(annotations)
            ds = load_annotations(annotations)
            root = Path(ds["info"]["image_dir"])
        self.transform = transform
        self.table = BoxTable(ds, skip_crowd=not keep_crowd)
        images = ds["images"]
        # fixed-width numpy arrays, not lists of str/int: no refcount churn in forked workers
        self.root = str(root)
        self.file_names = np.array([img["file_name"].encode() for img in images], dtype=np.bytes_)
        self.image_ids = np.array([img["id"] for img in images], dtype=np.int64)
        self.sizes = np.array([(img["height"], img["width"]) for img in images], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.file_names)

    def __getitem__(self, i: int) -> tuple[Any, dict]:
        path = os.path.join(self.root, self.file_names[i].decode())
        image = read_image(path)
        h, w = (int(v) for v in self.sizes[i])
        if tuple(image.shape[1:]) != (h, w):
            raise DataError(
                path,
                f"image is {image.shape[2]}x{image.shape[1]} but the annotations "
                f"({self.source}) say {w}x{h}",
            )
        gt = self.table[i]
        boxes = torch.from_numpy(gt.boxes.copy())
        labels = torch.from_numpy(gt.labels.copy())
        difficult = torch.from_numpy(gt.difficult.copy())
        if self.transform is not None:
            rows = torch.arange(len(labels), dtype=torch.int64)
            image, boxes, rows = self.transform(image, boxes, rows)
            labels, difficult = labels[rows], difficult[rows]
        target = {
            "boxes": boxes,
            "labels": labels,
            "difficult": difficult,
            "image_id": int(self.image_ids[i]),
            "orig_size": (h, w),
        }
        return image, target
