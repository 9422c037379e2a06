"""Read a phase volume from any xtwin file, for the microstructure metrics.

- microstructure file (``xtwin microstructure``): ``/microstructure/phases`` (+ labels);
- truth file: ``/truth/phases`` (+ labels), or the fine grid with ``fine=True``;
- Li-map file: the Ni mask as a two-phase volume (1 active, 0 everything else).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io._h5 import attrs_dict, open_h5


@dataclass(frozen=True)
class PhaseVolume:
    """Phase codes (z, y, x), voxel size, optional particle labels, and where they came from."""

    phases: np.ndarray
    voxel_m: float
    labels: np.ndarray | None
    kind: str


def read_phase_volume(path: str | os.PathLike, *, fine: bool = False) -> PhaseVolume:
    """Read phases (and labels when known) from a microstructure, truth or Li-map file."""
    with open_h5(path, "volume file") as f:
        if "/microstructure" in f:
            g = f["/microstructure"]
            key = "fine" if fine else "coarse"
            if key not in g:
                raise XtwinInputError(f"{path} has no /microstructure/{key} grid")
            a = attrs_dict(g)
            return PhaseVolume(
                g[key]["phases"][()],
                float(a[f"{key}_voxel_m"]),
                g[key]["labels"][()],
                "microstructure",
            )
        if "/truth/phases" in f:
            a = attrs_dict(f["/truth"])
            base = "/truth/fine" if fine else "/truth"
            vox = a["fine_pixel_size_m"] if fine else a["pixel_size_m"]
            return PhaseVolume(
                f[f"{base}/phases"][()], float(vox), f[f"{base}/labels"][()], "truth"
            )
        if "/li/mask" in f:
            mask = f["/li/mask"][()].astype(bool)
            if mask.ndim != 3:
                raise XtwinInputError(f"{path} is a 2D Li map; microstructure metrics need 3D")
            return PhaseVolume(
                mask.astype(np.uint8), float(f["/recon/pixel_size_m"][()]), None, "limap"
            )
    raise XtwinInputError(
        f"{path} holds no phase volume; give a microstructure, truth or Li-map file"
    )
