"""Reports of the workflow: paper tables (Markdown + CSV), figures, evaluation-server files.

Modules: `tables` (reproduced vs paper per row), `figures` (ScratchDet Figure 1, precision-recall
curves, detection grids), `learning_curve`, `precision_recall`, `submission` (VOC 2012 / COCO
test-dev upload files and unlabelled test lists); `scratchdet/cli/report.py` holds the `report`
commands.
"""

__all__ = []
