"""Preprocessing: flat/dark normalization and -log with per-pixel variance."""

from xtwin.prep.center import CenterEstimate, find_rotation_center, shift_rows
from xtwin.prep.normalize import Absorbance, estimate_counts_per_photon, normalize_scan

__all__ = [
    "Absorbance",
    "CenterEstimate",
    "estimate_counts_per_photon",
    "find_rotation_center",
    "normalize_scan",
    "shift_rows",
]
