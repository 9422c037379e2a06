"""Tomographic reconstruction (ASTRA), slice by slice, with per-voxel noise propagation."""

from xtwin.recon.fbp import Volume, reconstruct

__all__ = ["Volume", "reconstruct"]
