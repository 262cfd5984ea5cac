"""VOC AP the way the devkit computes it: one detection at a time, in plain Python.

Obviously correct and slow. It is the oracle that `voc.py`'s vectorised implementation is
tested against (tests/test_eval_voc.py) and that `scratchdet benchmark eval` checks it with, so
it lives in the package rather than in the tests.
"""

from __future__ import annotations

import math

__all__ = ["reference_voc_ap"]


def _iou(d: list[float], g: list[float]) -> float:
    """Same arithmetic, in the same order, as voc.match_detections (so ties compare equal)."""
    ix1, iy1 = max(d[0], g[0]), max(d[1], g[1])
    ix2, iy2 = min(d[0] + d[2], g[0] + g[2]), min(d[1] + d[3], g[1] + g[3])
    inter = max(ix2 - ix1, 0.0) * max(iy2 - iy1, 0.0)
    union = d[2] * d[3] + g[2] * g[3] - inter
    return inter / union if union > 0 else 0.0


def reference_voc_ap(gt: dict, dets: list[dict], metric: str, thr: float = 0.5) -> dict:
    """The VOC devkit's loop, one detection at a time; obviously correct, slow."""
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    per_class: dict[str, float] = {}
    npos_all: dict[str, int] = {}
    for cat in cats:
        c = cat["id"]
        boxes: dict[int, list[dict]] = {}
        npos = 0
        for ann in gt["annotations"]:
            if ann["category_id"] == c:
                ign = bool(ann.get("difficult", 0) or ann.get("iscrowd", 0))
                boxes.setdefault(ann["image_id"], []).append(
                    {"bbox": [float(v) for v in ann["bbox"]], "ignore": ign, "taken": False}
                )
                npos += not ign
        npos_all[cat["name"]] = npos
        mine = [d for d in dets if d["category_id"] == c]
        mine = sorted(mine, key=lambda d: -d["score"])  # Python's sort is stable
        tp, fp = [], []
        for d in mine:
            ovmax, jmax = -math.inf, -1
            for j, g in enumerate(boxes.get(d["image_id"], [])):
                ov = _iou([float(v) for v in d["bbox"]], g["bbox"])
                if ov > ovmax:
                    ovmax, jmax = ov, j
            if ovmax >= thr:
                g = boxes[d["image_id"]][jmax]
                if g["ignore"]:
                    tp.append(0), fp.append(0)
                elif not g["taken"]:
                    g["taken"] = True
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(1)
        if npos == 0:
            per_class[cat["name"]] = math.nan
            continue
        rec, prec, ctp, cfp = [], [], 0, 0
        for t, f in zip(tp, fp):
            ctp, cfp = ctp + t, cfp + f
            rec.append(ctp / npos)
            prec.append(ctp / (ctp + cfp) if ctp + cfp else 0.0)
        if metric == "voc07":
            ap = 0.0
            for i in range(11):
                above = [p for r, p in zip(rec, prec) if r >= i / 10]
                ap += (max(above) if above else 0.0) / 11
        else:
            mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            ap = sum(
                (mrec[i + 1] - mrec[i]) * mpre[i + 1]
                for i in range(len(mrec) - 1)
                if mrec[i + 1] != mrec[i]
            )
        per_class[cat["name"]] = ap
    valid = [v for v in per_class.values() if not math.isnan(v)]
    return {
        "map": sum(valid) / len(valid) if valid else math.nan,
        "per_class": per_class,
        "npos": npos_all,
    }
