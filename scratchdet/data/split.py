"""Split one annotation file into train and test parts, reproducibly (`scratchdet data split`).

For datasets that come without split lists (a folder of photos with VOC XMLs, say): images are
shuffled by a seeded permutation of their ids in sorted order, so the same file and seed always
give the same split, whatever order the file lists the images in. Categories and `info` are kept
in both parts; annotations follow their image.
"""

from __future__ import annotations

import copy
import random

from scratchdet.errors import DataError

__all__ = ["split_dataset"]


def split_dataset(
    ds: dict, n_test: int, seed: int = 0, source: str = "<annotations>"
) -> tuple[dict, dict]:
    """(train, test): ``n_test`` images chosen by ``seed`` go to test, the rest to train."""
    ids = sorted(img["id"] for img in ds["images"])
    if not 0 < n_test < len(ids):
        raise DataError(
            source,
            f"cannot put {n_test} of {len(ids)} images in the test part: "
            "need at least one image on each side",
        )
    random.Random(seed).shuffle(ids)
    test_ids = set(ids[:n_test])

    def part(keep: bool) -> dict:
        out = {k: copy.deepcopy(v) for k, v in ds.items() if k not in ("images", "annotations")}
        out["images"] = [img for img in ds["images"] if (img["id"] in test_ids) == keep]
        out["annotations"] = [a for a in ds["annotations"] if (a["image_id"] in test_ids) == keep]
        return out

    return part(False), part(True)
