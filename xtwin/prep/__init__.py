"""Preprocessing: flat/dark normalization and -log with per-pixel variance."""

from xtwin.prep.normalize import Absorbance, estimate_counts_per_photon, normalize_scan

__all__ = ["Absorbance", "estimate_counts_per_photon", "normalize_scan"]
