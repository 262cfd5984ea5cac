"""The training and test-time input: the augmentation, sample stream, both input pipelines.

- ``augment.py``: the SSD augmentation as data (``AugmentConfig``; ``data.augment`` names).
- ``sampling.py``: the resumable sample stream and per-sample seeds.
- ``photometric.py``, ``geometry.py``: the augmentation's operations, for one image or a batch.
- ``per_image.py``: one image on the CPU; ``sample_train_params`` draws every decision.
- ``batched.py``: a whole batch on any device, from the same decisions.
- ``pipeline.py``: the CPU and device pipelines behind ``build_train_input``; both yield
  ``TrainBatch(images, loc_t, labels_t)`` on the training device.
- ``test_time.py``: resize + mean for detection.
"""

from scratchdet.input.augment import AUGMENT_CONFIGS, NO_AUGMENTATION, AugmentConfig, augment_config
from scratchdet.input.pipeline import TrainBatch, TrainInput, build_train_input, resolve_pipeline
from scratchdet.input.test_time import SSDTestTransform

__all__ = [
    "AUGMENT_CONFIGS",
    "NO_AUGMENTATION",
    "AugmentConfig",
    "SSDTestTransform",
    "TrainBatch",
    "TrainInput",
    "augment_config",
    "build_train_input",
    "resolve_pipeline",
]
