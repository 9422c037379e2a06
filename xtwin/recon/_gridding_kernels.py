"""Compiled loops of :mod:`xtwin.recon._gridding` (numba; imported where first used).

The fine grid is float32 ``(nf + W, 2 (nf + W))``: complex values interleaved, ``W`` rows and
columns of padding that :func:`fold_into` adds back (periodic wrap), so the spreading never wraps
an index. ``fastmath`` lets LLVM fuse multiply-adds; the compiled code is deterministic on a
given machine (same bits for the same input, whatever the thread).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_jit = njit(cache=True, nogil=True, fastmath=True, error_model="numpy", boundscheck=False)


@njit(inline="always", nogil=True, fastmath=True, error_model="numpy", boundscheck=False)
def _patch(g, r0, c0, wr, j, x0, x1, x2, x3, re, im, flip):  # pragma: no cover - compiled
    """Add ``re + i im`` times the 4 x 4 kernel weights at rows ``r0..r0+3`` and complex
    columns ``c0 / 2 ..`` (``x0..x3``: the column weights in order; ``flip``: the row weights
    reversed, for a mirror image)."""
    for s in range(4):
        w = wr[j, 3 - s] if flip else wr[j, s]
        ar = re * w
        ai = im * w
        r = r0 + s
        g[r, c0] += ar * x0
        g[r, c0 + 1] += ai * x0
        g[r, c0 + 2] += ar * x1
        g[r, c0 + 3] += ai * x1
        g[r, c0 + 4] += ar * x2
        g[r, c0 + 5] += ai * x2
        g[r, c0 + 6] += ar * x3
        g[r, c0 + 7] += ai * x3


@njit(inline="always", nogil=True)
def _mirror(i0, nf):  # pragma: no cover - inlined
    """First cell of a point's mirror image (its weights are the point's, reversed)."""
    m = nf - i0 - 3
    return m + nf if m < 0 else m


@_jit
def spread_pair(i0r, i0c, wr, wc, a, b, g, nf):  # pragma: no cover - compiled
    """Spread ``(a + i b) / 2`` at the points and ``(conj a + i conj b) / 2`` at their mirror
    images (the transform's real part is then ``Re f_a`` and its imaginary part ``Re f_b``)."""
    half = np.float32(0.5)
    for j in range(a.shape[0]):
        aj = a[j]
        bj = b[j]
        x0, x1, x2, x3 = wc[j, 0], wc[j, 1], wc[j, 2], wc[j, 3]
        r0 = i0r[j]
        c0 = 2 * i0c[j]
        _patch(
            g,
            r0,
            c0,
            wr,
            j,
            x0,
            x1,
            x2,
            x3,
            half * (aj.real - bj.imag),
            half * (aj.imag + bj.real),
            False,
        )
        rm = _mirror(r0, nf)
        cm = 2 * _mirror(i0c[j], nf)
        _patch(
            g,
            rm,
            cm,
            wr,
            j,
            x3,
            x2,
            x1,
            x0,
            half * (aj.real + bj.imag),
            half * (bj.real - aj.imag),
            True,
        )


@_jit
def spread_one(i0r, i0c, wr, wc, a, g, nf):  # pragma: no cover - compiled
    """Spread ``a`` at the points."""
    for j in range(a.shape[0]):
        x0, x1, x2, x3 = wc[j, 0], wc[j, 1], wc[j, 2], wc[j, 3]
        _patch(g, i0r[j], 2 * i0c[j], wr, j, x0, x1, x2, x3, a[j].real, a[j].imag, False)


@_jit
def pack_pair(pa, pb, pad, buf):  # pragma: no cover - compiled
    """``buf[k, j] = pa[k, j - pad] + i pb[k, j - pad]``, edge values beyond the detector;
    ``pb`` of zero rows: a lone slice (imaginary part zero)."""
    n = pa.shape[1]
    width = buf.shape[1]
    lone = pb.shape[0] == 0
    for k in range(buf.shape[0]):
        row = buf[k]
        a = pa[k]
        if lone:
            for j in range(n):
                row[pad + j] = a[j]
            lo = complex(a[0], 0.0)
            hi = complex(a[n - 1], 0.0)
        else:
            b = pb[k]
            for j in range(n):
                row[pad + j] = complex(a[j], b[j])
            lo = complex(a[0], b[0])
            hi = complex(a[n - 1], b[n - 1])
        for j in range(pad):
            row[j] = lo
        for j in range(pad + n, width):
            row[j] = hi


@_jit
def filter_pair(z, h_a, h_b, ramp):  # pragma: no cover - compiled
    """Filter the spectra of two real signals packed as ``a + i b`` with two real, even
    responses in place: ``Z(k) -> H_a A(k) + i H_b B(k)``, where
    ``A = (Z(k) + conj Z(-k)) / 2`` and ``B = (Z(k) - conj Z(-k)) / 2i``; then, unless
    ``ramp`` is empty, shift both signals: ``ramp`` is the shift's Hermitian phase ramp in FFT
    order (``ramp(-k) = conj ramp(k)``, real at the Nyquist frequency), so each filtered
    spectrum stays that of a real signal."""
    n = z.shape[1]
    shifted = ramp.size > 0
    for r in range(z.shape[0]):
        for k in range(n // 2 + 1):
            km = (n - k) % n
            zk = z[r, k]
            zm = z[r, km]
            s = np.float32(0.5) * (h_a[k] + h_b[k])
            d = np.float32(0.5) * (h_a[k] - h_b[k])
            yk = zk * s + np.conj(zm) * d
            ym = zm * s + np.conj(zk) * d
            if shifted:
                yk *= ramp[k]
                ym *= ramp[km]
            z[r, k] = yk
            if km != k:
                z[r, km] = ym


@_jit
def spread_spectra(i0r, i0c, wr, wc, y, ph, lone, g, nf):  # pragma: no cover - compiled
    """Spread the spectra ``y`` (rows: angles, FFT order, length ``m``) of two real slices
    packed as ``a + i b``: ``y(k) ph(k) / 2`` at the point of frequency ``k >= 0`` and
    ``y(-k) conj(ph(k)) / 2`` at its mirror image, so the transform is ``Re f_a + i Re f_b``;
    ``lone``: one slice, ``y(k) ph(k)`` at the points only (the transform's real part)."""
    m = y.shape[1]
    mh = ph.shape[1]
    half = np.float32(0.5)
    for a in range(y.shape[0]):
        for k in range(mh):
            j = a * mh + k
            p = y[a, k] * ph[a, k]
            if not lone:
                p = p * half
            x0, x1, x2, x3 = wc[j, 0], wc[j, 1], wc[j, 2], wc[j, 3]
            r0 = i0r[j]
            _patch(g, r0, 2 * i0c[j], wr, j, x0, x1, x2, x3, p.real, p.imag, False)
            if lone:
                continue
            q = y[a, (m - k) % m] * np.conj(ph[a, k]) * half
            cm = 2 * _mirror(i0c[j], nf)
            _patch(g, _mirror(r0, nf), cm, wr, j, x3, x2, x1, x0, q.real, q.imag, True)


@_jit
def fold_into(g, nf, out):  # pragma: no cover - compiled
    """The periodic ``nf x nf`` grid (complex64 ``out``) of the padded grid ``g``."""
    pad = g.shape[0] - nf
    for r in range(nf):
        for c in range(nf):
            out[r, c] = complex(g[r, 2 * c], g[r, 2 * c + 1])
    for s in range(pad):
        for c in range(nf + pad):
            cc = c if c < nf else c - nf
            out[s, cc] += complex(g[nf + s, 2 * c], g[nf + s, 2 * c + 1])
    for r in range(nf):
        for s in range(pad):
            out[r, s] += complex(g[r, 2 * (nf + s)], g[r, 2 * (nf + s) + 1])


@_jit
def extract(f, idx, deconv, scale_re, scale_im, out_re, out_im):  # pragma: no cover
    """Deconvolved modes of the transformed grid ``f``: real part times ``scale_re`` into
    ``out_re``, imaginary part times ``scale_im`` into ``out_im`` (a 0-row array: skipped)."""
    n = idx.shape[0]
    both = out_im.shape[0] > 0
    for r in range(n):
        dr = deconv[r]
        fr = f[idx[r]]
        for c in range(n):
            v = fr[idx[c]] * (dr * deconv[c])
            out_re[r, c] = v.real * scale_re
            if both:
                out_im[r, c] = v.imag * scale_im
