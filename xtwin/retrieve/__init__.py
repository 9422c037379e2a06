"""Multi-energy (three-energy by default) Li retrieval with per-voxel uncertainty."""

from xtwin.retrieve.three_energy import Calibration, Retrieval, calibrate
from xtwin.retrieve.voxels import retrieve

__all__ = ["Calibration", "Retrieval", "calibrate", "retrieve"]
