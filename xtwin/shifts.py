"""Sub-pixel image shifts shared by the twin (``forward``), ``prep`` and ``recon``.

Two kinds, for two needs:

* :func:`shift_rows` / :func:`shift_image_stack`: Fourier (phase-ramp) shifts along whole
  rows. They neither smooth nor change the noise, and are used where a whole row is at hand
  (sinograms, detector rows, the twin's drift).
* :func:`lanczos_weights` / :func:`shift_axis_local`: a finite (Lanczos-4, 8-tap) kernel for
  shifts across detector rows when the pipeline streams blocks of rows. The kernel has finite
  support, so a block read with a halo of ``LANCZOS_A`` rows gives exactly what the whole
  detector would: results do not depend on the block size.

References
----------
.. [1] C. E. Duchon, "Lanczos filtering in one and two dimensions," J. Appl. Meteor. 18,
   1016-1022 (1979).
"""

from __future__ import annotations

import numpy as np

#: Half-width of the Lanczos kernel (taps = 2 * LANCZOS_A).
LANCZOS_A = 4


def shift_rows(sino: np.ndarray, shift_px: float) -> np.ndarray:
    """Shift every row (last axis) of ``sino`` by ``shift_px`` (positive: to higher indices).

    A phase ramp in Fourier space, with rows padded by their edge values to avoid wrap-around.

    Parameters
    ----------
    sino : ndarray
        Any array; the last axis is shifted.
    shift_px : float
        Shift in pixels.

    Returns
    -------
    ndarray
        The shifted array, same shape and dtype.
    """
    from scipy import fft

    n = sino.shape[-1]
    pad = int(np.ceil(abs(shift_px))) + n // 2
    total = fft.next_fast_len(n + 2 * pad, real=True)
    width = [(0, 0)] * (sino.ndim - 1) + [(pad, total - n - pad)]
    padded = np.pad(sino, width, mode="edge")
    freq = np.fft.rfftfreq(total)
    ramp = np.exp(-2j * np.pi * freq * shift_px)
    if padded.dtype == np.float32:
        ramp = ramp.astype(np.complex64)
    out = fft.irfft(fft.rfft(padded, axis=-1) * ramp, n=total, axis=-1)
    return np.ascontiguousarray(out[..., pad : pad + n], dtype=sino.dtype)


def undo_row_shifts(
    stack: np.ndarray, shifts_px: np.ndarray, *, variance: bool = False
) -> np.ndarray:
    """A float32 copy of ``stack`` (n, ..., n_col) with item ``i``'s rows (last axis) moved
    by ``-shifts_px[i]`` (:func:`shift_rows`): each energy's detector shift undone in its
    sinograms; ``variance``: the shifted items are variances, clipped at zero."""
    out = np.array(stack, dtype=np.float32)
    for i, dx in enumerate(np.broadcast_to(shifts_px, out.shape[:1])):
        if dx:
            out[i] = shift_rows(out[i], -float(dx))
            if variance:
                np.maximum(out[i], 0.0, out=out[i])
    return out


def shift_image_stack(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift the last two axes of ``a`` by (dy, dx) pixels (Fourier shift, edge padding).

    Parameters
    ----------
    a : ndarray, shape (..., n_row, n_col)
        Images.
    dy, dx : float
        Shifts in pixels along rows and columns (positive: to higher indices).

    Returns
    -------
    ndarray
        The shifted images.
    """
    out = shift_rows(a.reshape(-1, a.shape[-1]), dx).reshape(a.shape) if dx else a
    if dy:
        t = np.swapaxes(out, -1, -2)
        t = shift_rows(np.ascontiguousarray(t).reshape(-1, t.shape[-1]), dy).reshape(t.shape)
        out = np.ascontiguousarray(np.swapaxes(t, -1, -2))
    return out


def lanczos_weights(frac: float) -> np.ndarray:
    """Weights of the 8 samples at offsets ``-3 .. 4`` for interpolation at ``frac`` in [0, 1).

    The weights are normalized to sum to one (a constant stays constant).

    Parameters
    ----------
    frac : float
        Fractional position between sample 0 and sample 1.

    Returns
    -------
    ndarray, shape (2 * LANCZOS_A,)
    """
    k = np.arange(-LANCZOS_A + 1, LANCZOS_A + 1, dtype=np.float64)
    x = frac - k
    w = np.sinc(x) * np.sinc(x / LANCZOS_A)
    return w / w.sum()


def source_rows(lo: int, hi: int, shift_px: float) -> tuple[int, int]:
    """Input rows ``[start, stop)`` that :func:`shift_axis_local` needs to produce output rows
    ``[lo, hi)`` of an image whose content moves by ``-shift_px`` (output row r samples input
    position r + shift_px). The range may reach outside the detector: clip and edge-replicate.
    """
    base = int(np.floor(shift_px))
    return lo + base - LANCZOS_A + 1, hi + base + LANCZOS_A


def shift_axis_local(
    block: np.ndarray, lo: int, hi: int, shift_px: float, *, axis: int, squared: bool = False
) -> np.ndarray:
    """Resample output rows ``[lo, hi)`` at input positions ``r + shift_px`` along ``axis``.

    Parameters
    ----------
    block : ndarray
        Input rows ``source_rows(lo, hi, shift_px)`` along ``axis`` (already edge-replicated
        where they fall outside the detector).
    lo, hi : int
        Output rows.
    shift_px : float
        Sampling offset in pixels (the registration shift).
    axis : int
        The row axis of ``block``.
    squared : bool
        Use the squared weights: the variance of the interpolated value of uncorrelated
        samples with variances ``block``.

    Returns
    -------
    ndarray
        ``hi - lo`` rows along ``axis``, float32.
    """
    from xtwin._kernels import weighted_rows

    base = int(np.floor(shift_px))
    w = lanczos_weights(shift_px - base)
    if squared:
        w = w**2
    n_out = hi - lo
    shape = block.shape
    axis = axis % block.ndim
    # (before, rows, after): the kernel runs along the middle axis, the rows contiguous
    outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1 :]))
    flat = np.ascontiguousarray(block, dtype=np.float32).reshape(outer, shape[axis], inner)
    out = np.empty((outer, n_out, inner), np.float32)
    weighted_rows(flat, w.astype(np.float32), out)
    return out.reshape(shape[:axis] + (n_out,) + shape[axis + 1 :])


def scaled_positions(lo: int, hi: int, scale: float, shift_px: float, centre: float) -> np.ndarray:
    """Input positions sampled by output rows ``[lo, hi)`` under a magnification ``scale``
    about ``centre`` and a shift: ``centre + scale * (r - centre) + shift_px``."""
    r = np.arange(lo, hi, dtype=np.float64)
    return centre + scale * (r - centre) + shift_px


def scaled_source_rows(
    lo: int, hi: int, scale: float, shift_px: float, centre: float
) -> tuple[int, int]:
    """Input rows ``[start, stop)`` that :func:`scale_axis_local` needs for output rows
    ``[lo, hi)`` (may reach outside the detector: clip and edge-replicate)."""
    pos = scaled_positions(lo, max(hi, lo + 1), scale, shift_px, centre)
    first, last = int(np.floor(pos.min())), int(np.floor(pos.max()))
    return first - LANCZOS_A + 1, last + LANCZOS_A + 1


def scale_axis_local(
    block: np.ndarray,
    start: int,
    lo: int,
    hi: int,
    scale: float,
    shift_px: float,
    centre: float,
    *,
    axis: int,
    squared: bool = False,
) -> np.ndarray:
    """Resample output rows ``[lo, hi)`` at input positions
    ``centre + scale (r - centre) + shift_px`` along ``axis`` (Lanczos-4, finite support).

    Parameters
    ----------
    block : ndarray
        Input rows ``[start, start + block.shape[axis])`` along ``axis``, covering
        :func:`scaled_source_rows` (edge-replicated outside the detector).
    start : int
        The detector row of ``block``'s first row.
    lo, hi : int
        Output rows.
    scale, shift_px, centre : float
        The magnification about ``centre`` and the shift.
    axis : int
    squared : bool
        Use squared weights (variance propagation of uncorrelated samples).

    Returns
    -------
    ndarray
        ``hi - lo`` rows along ``axis``, float32.
    """
    pos = scaled_positions(lo, hi, scale, shift_px, centre)
    base = np.floor(pos).astype(int)
    frac = pos - base
    k = np.arange(-LANCZOS_A + 1, LANCZOS_A + 1, dtype=np.float64)
    x = frac[:, None] - k[None, :]
    w = np.sinc(x) * np.sinc(x / LANCZOS_A)
    w /= w.sum(axis=1, keepdims=True)
    if squared:
        w = w**2
    moved = np.moveaxis(block, axis, 0)
    out = np.zeros((hi - lo,) + moved.shape[1:], dtype=np.float32)
    idx = base[:, None] + k[None, :].astype(int) - start  # (n_out, taps) rows of block
    for t in range(w.shape[1]):
        wt = w[:, t].astype(np.float32).reshape((-1,) + (1,) * (moved.ndim - 1))
        out += wt * moved[idx[:, t]]
    return np.moveaxis(out, 0, axis)
