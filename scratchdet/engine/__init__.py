"""Training and detection: the loop, one optimizer step, snapshots, the training log, detection.

Modules: `train` (the loop: warmup + multistep lr, snapshots, divergence), `step` (one optimizer
step), `checkpoint` (atomic, weights-only snapshots kept N deep), `training_log` (the per-step
`metrics.csv`), `detect` (a checkpoint over a split -> COCO results), `learning_curve` (every
snapshot scored); the rest serve these (device, precision, distributed, preemption, locks).
Nothing is imported here, so importing one module loads only what that module needs.
"""

__all__ = []
