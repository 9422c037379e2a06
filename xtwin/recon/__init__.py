"""Tomographic reconstruction (ASTRA), slice by slice, with per-voxel noise propagation."""

from xtwin.recon.fbp import Volume, fbp_variance_factor, reconstruct

__all__ = ["Volume", "fbp_variance_factor", "reconstruct"]
