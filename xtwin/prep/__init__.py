"""Preprocessing: flat/dark normalization and -log with per-pixel variance; registration."""

from xtwin.prep.normalize import (
    Absorbance,
    estimate_counts_per_photon,
    normalize_block,
    normalize_scan,
)

__all__ = ["Absorbance", "estimate_counts_per_photon", "normalize_block", "normalize_scan"]
