"""scratchdet: reproduce DSOD (ICCV 2017) and ScratchDet (CVPR 2019), detectors trained from
scratch."""

__all__ = ["__version__"]

__version__ = "0.1.0"
