"""The Ni mask's reference edge jump, found before the blocks so that every block is masked
as it is made (no second pass over the map) and the same whatever the block size or workers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtwin._threads import thread_map
from xtwin.pipeline._context import BlockContext
from xtwin.pipeline._read import read_block
from xtwin.recon.volume import field_of_view_disc
from xtwin.retrieve.three_energy import JUMP_REFERENCE_PERCENTILE, jump_reference
from xtwin.shifts import undo_row_shifts

#: Detector rows reconstructed before the blocks to set the Ni mask's reference edge jump.
JUMP_SAMPLE_ROWS = 16


@dataclass(frozen=True)
class MaskReference:
    """The reference edge jump (1/m) and the rows it was taken over."""

    jump_reference_per_m: float
    sample_rows: list[int]

    def provenance(self, min_jump_snr: float, min_jump_fraction: float) -> dict:
        """The mask's rule with its numbers."""
        return {
            "jump_reference_per_m": self.jump_reference_per_m,
            "percentile": JUMP_REFERENCE_PERCENTILE,
            "sample_rows": self.sample_rows,
            "min_jump_snr": min_jump_snr,
            "min_jump_fraction": min_jump_fraction,
            "rule": "Ni where J / sigma_J >= min_jump_snr and J >= min_jump_fraction x "
            "jump_reference_per_m (the 99.5th percentile of J over the sample rows)",
        }


def mask_reference(ctx: BlockContext, lo: int, hi: int) -> MaskReference:
    """The 99.5th percentile of the edge jump J over up to 16 rows spread over ``[lo, hi)``
    (tomography: inside the field of view, the voxels the map reports).

        J is linear in the attenuation, so it is reconstructed directly: one FBP per row of the
        energy combination ``sum_e pinv[J, e] p_e``.
    """
    h = ctx.source.header
    rows = np.unique(np.linspace(lo, hi - 1, min(JUMP_SAMPLE_ROWS, hi - lo)).astype(int))
    weights = ctx.rules.calibration.inverse[1]
    pool = ctx.slice_pool()
    shifts = ctx.reconstruction_shifts()
    inside = field_of_view_disc(h.shape[3], ctx.center_offset_px)

    def one(r: int) -> np.ndarray:
        p = read_block(ctx, r, r + 1, variance=False)[0][:, :, 0]  # (n_energy, angle, col)
        if shifts is not None:  # the column shifts that the blocks' reconstruction undoes
            p = undo_row_shifts(p, shifts)
        q = np.tensordot(weights, p, axes=(0, 0))  # (n_angle, n_col)
        if pool is None:
            return q[0].ravel()
        return pool.reconstructor().fbp(q[None])[0][inside] / h.pixel_size_m

    try:
        values = thread_map(one, [int(r) for r in rows], ctx.threads)
    finally:
        if pool is not None:
            pool.close()
    value = jump_reference(np.concatenate(values) if values else np.zeros(0))
    return MaskReference(value, rows.tolist())
