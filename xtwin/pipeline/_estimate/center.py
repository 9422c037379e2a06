"""The rotation axis, found from the data as :func:`xtwin.recon.center.find_rotation_center`
finds it, on rows read from the scan (with each projection's run-out undone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtwin.pipeline._read import RowReader
from xtwin.recon.center import center_from_rows


@dataclass(frozen=True)
class CenterRecord:
    """The rotation axis used (px from the detector centre) and how it was found.

    Attributes
    ----------
    offset_px : float
    search : dict
        The search's estimate, spread and rows; empty when the axis was given.
    """

    offset_px: float
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """Whether the axis was found from the data (not given)."""
        return bool(self.search)


def find_center(reader: RowReader, sample: np.ndarray, offsets: np.ndarray | None) -> CenterRecord:
    """The axis from the most structured rows of the most absorbing energy of ``sample``
    (the registration reference, so its rows need no shift)."""
    h = reader.source.header
    ie = int(np.argmax(sample.reshape(h.shape[0], -1).mean(axis=1)))
    off = None if offsets is None else offsets[ie]
    est = center_from_rows(
        lambda rows: np.stack([reader.aligned_row(ie, int(r), off) for r in rows]),
        sample[ie].std(axis=(0, 2)),
        h.theta_deg,
        float(h.energy_eV[ie]),
    )
    return CenterRecord(
        est.offset_px,
        {
            "center_offset_px": round(est.offset_px, 4),
            "spread_px": round(est.spread_px, 4),
            "rows": est.rows.tolist(),
            "per_row_px": np.round(est.per_row_px, 3).tolist(),
            "energy_eV": est.energy_eV,
        },
    )
