"""Preprocessing: flat/dark normalization and -log with per-pixel variance."""

from xtwin.prep.normalize import Absorbance, normalize_scan

__all__ = ["Absorbance", "normalize_scan"]
