"""Type-1 non-uniform FFT onto the slice grid from fixed polar points: xtwin's own gridding.

The Fourier FBP sums plane waves at the same polar points for every slice of a scan, so the
interpolation weights of each point onto the oversampled ("fine") grid are computed once per
geometry and kept (gridrec's approach [1], at the accuracy of a modern NUFFT [2, 3]): per
slice pair only the spreading (compiled with numba), one 2D FFT of the fine grid and the
deconvolution remain. FINUFFT's general spreader evaluates its kernel for every point on every
call; at 512^2 x 720 this gridding takes half its time (docs/performance.md).

The kernel is the "exponential of semicircle" ``exp(beta (sqrt(1 - (2 t / W)^2) - 1))`` of
FINUFFT [3], ``W = 4`` fine-grid cells wide, on a grid oversampled ``SIGMA`` times; its
Fourier transform (for the deconvolution) is computed by Gauss-Legendre quadrature. Two real
slices share one transform (the first's coefficients at the points, the second's at their
mirror images: see :meth:`PolarGridder.spectra`), as in gridrec.

References
----------
.. [1] B. A. Dowd et al., "Developments in synchrotron x-ray computed microtomography at the
   National Synchrotron Light Source," Proc. SPIE 3772 (1999) (gridrec).
.. [2] J. I. Jackson, C. H. Meyer, D. G. Nishimura and A. Macovski, "Selection of a
   convolution function for Fourier inversion using gridding," IEEE Trans. Med. Imaging 10,
   473-478 (1991).
.. [3] A. H. Barnett, J. Magland and L. af Klinteberg, "A parallel nonuniform fast Fourier
   transform library based on an 'exponential of semicircle' kernel," SIAM J. Sci. Comput.
   41, C479-C504 (2019).
"""

from __future__ import annotations

import threading

import numpy as np

#: Kernel width in fine-grid cells, oversampling of the fine grid and the kernel's shape
#: (chosen on the polar points of a 512^2 x 720 FBP: inside the field of view the transform's
#: rms error is 9e-4 of the image's rms against a 1e-6 FINUFFT reference; see
#: docs/performance.md). The loops in ``_gridding_kernels`` are written for ``W = 4``.
W = 4
SIGMA = 1.25
BETA = 7.5


def _kernel(t: np.ndarray, beta: float = BETA) -> np.ndarray:
    z = 1.0 - (2.0 * np.asarray(t, dtype=np.float64) / W) ** 2
    out = np.zeros(z.shape)
    inside = z > 0
    out[inside] = np.exp(beta * (np.sqrt(z[inside]) - 1.0))
    return out


def fine_size(n: int) -> int:
    """Even, FFT-friendly fine grid size for an ``n x n`` image."""
    from scipy import fft

    nf = fft.next_fast_len(max(int(np.ceil(SIGMA * n)), 2 * W))
    while nf % 2:
        nf = fft.next_fast_len(nf + 1)
    return nf


class PolarGridder:
    """Precomputed spreading of fixed points onto the fine grid, and the transform.

    Parameters
    ----------
    pts_row, pts_col : ndarray
        Point coordinates in radians per image pixel (the phases of the image's rows and
        columns), in ``[-pi, pi]``.
    n : int
        The image is ``n x n``; output modes ``-(n // 2) .. n - n // 2 - 1`` on each axis
        (FINUFFT's centred order), image row along ``pts_row``.

    Notes
    -----
    ``f[k1, k2] = sum_j c_j exp(+i (k1 pts_row_j + k2 pts_col_j))``, to about 1e-3 relative.
    The weights take 40 bytes per point; each thread keeps one fine grid.
    """

    def __init__(self, pts_row: np.ndarray, pts_col: np.ndarray, n: int) -> None:
        self.n = int(n)
        self.nf = nf = fine_size(self.n)
        self.i0r, self.wr = self._weights(pts_row)
        self.i0c, self.wc = self._weights(pts_col)
        tq, wq = np.polynomial.legendre.leggauss(64)
        tq = tq * W / 2
        wq = wq * W / 2
        k = np.arange(-(self.n // 2), self.n - self.n // 2)
        phihat = (wq * _kernel(tq)) @ np.cos(2 * np.pi * tq[:, None] * k[None, :] / nf)
        self.deconv = (1.0 / phihat).astype(np.float32)
        # fine-grid index of each output mode (CMCL order -> FFT order)
        self.mode_index = (k % nf).astype(np.int64)
        self._local = threading.local()

    def _weights(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.mod(np.asarray(x, dtype=np.float64) * self.nf / (2 * np.pi), self.nf)
        i0 = np.ceil(u - W / 2)
        w = _kernel(u[:, None] - (i0[:, None] + np.arange(W)[None, :]))
        return (i0.astype(np.int64) % self.nf).astype(np.int32), w.astype(np.float32)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """This thread's padded spreading grid and the periodic grid it is folded into."""
        bufs = getattr(self._local, "buffers", None)
        if bufs is None:
            g = np.empty((self.nf + W, 2 * (self.nf + W)), np.float32)
            bufs = self._local.buffers = (g, np.empty((self.nf, self.nf), np.complex64))
        return bufs

    def _finish(
        self,
        g: np.ndarray,
        f: np.ndarray,
        out_re: np.ndarray,
        out_im: np.ndarray | None,
        scale_re: float,
        scale_im: float,
    ) -> None:
        """Fold, transform, deconvolve and write the real (and imaginary) part."""
        from scipy import fft

        from xtwin.recon._gridding_kernels import extract, fold_into

        fold_into(g, self.nf, f)
        f = fft.ifft2(f, workers=1, overwrite_x=True)  # in place where scipy can
        none = np.empty((0, 0), np.float32)
        n2 = np.float32(self.nf * self.nf)
        extract(
            f,
            self.mode_index,
            self.deconv,
            np.float32(scale_re) * n2,
            np.float32(scale_im) * n2,
            out_re,
            none if out_im is None else out_im,
        )

    def coefficients(
        self,
        a: np.ndarray,
        b: np.ndarray | None,
        out_re: np.ndarray,
        out_im: np.ndarray | None = None,
        scale: float = 1.0,
    ) -> None:
        """``scale Re f_a`` into ``out_re`` and ``scale Re f_b`` into ``out_im`` (two
        coefficient vectors, one value per point, in one fine grid); ``b=None``: one."""
        from xtwin.recon._gridding_kernels import spread_one, spread_pair

        g, f = self._buffers()
        g.fill(0)
        if b is None:
            spread_one(self.i0r, self.i0c, self.wr, self.wc, a, g, self.nf)
        else:
            spread_pair(self.i0r, self.i0c, self.wr, self.wc, a, b, g, self.nf)
        self._finish(g, f, out_re, out_im, scale, scale)

    def spectra(
        self,
        y: np.ndarray,
        phase: np.ndarray,
        out_re: np.ndarray,
        out_im: np.ndarray | None,
        scale_re: float,
        scale_im: float,
    ) -> None:
        """Back-project the spectra ``y`` of two real slices packed as ``a + i b``
        (``(n_angle, m)`` complex64 in FFT order; the points are their frequencies
        ``0 .. m // 2`` times ``phase``): ``scale_re`` times slice a into ``out_re``,
        ``scale_im`` times slice b into ``out_im``; ``out_im=None``: ``y`` is one slice's
        spectrum (its first ``m // 2 + 1`` frequencies are used: a real FFT will do)."""
        from xtwin.recon._gridding_kernels import spread_spectra

        g, f = self._buffers()
        g.fill(0)
        lone = out_im is None
        spread_spectra(self.i0r, self.i0c, self.wr, self.wc, y, phase, lone, g, self.nf)
        self._finish(g, f, out_re, out_im, scale_re, scale_im)
