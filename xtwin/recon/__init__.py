"""Tomographic reconstruction: FBP backends (xtwin's Fourier FBP, ASTRA, tomopy gridrec),
slice-parallel, with per-voxel noise propagation; the rotation-axis search."""

from xtwin.recon.center import CenterEstimate, find_rotation_center
from xtwin.recon.fbp import METHODS, make_reconstructor
from xtwin.recon.volume import SlicePool, Volume, reconstruct

__all__ = [
    "METHODS",
    "CenterEstimate",
    "SlicePool",
    "Volume",
    "find_rotation_center",
    "make_reconstructor",
    "reconstruct",
]
