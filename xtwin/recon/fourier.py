"""Gridrec-class filtered back-projection: the back-projection as a non-uniform FFT.

By the Fourier slice theorem the back-projection of filtered projections ``q_k`` is::

    f(x) = dtheta * sum_k q_k(x . theta_k)
         = dtheta / L * sum_k sum_m Q_k[m] H[m] exp(2 pi i nu_m (x . theta_k - s_0))

a sum of plane waves at the polar points ``2 pi nu_m theta_k``: one type-1 NUFFT onto the image
grid (xtwin's gridding on the fixed polar points, :mod:`xtwin.recon._gridding`; FINUFFT [2] for
the projector and its adjoint) instead of ``n_angle x n^2`` interpolations, so the cost is
``O(n^2 log n + n_angle n)`` per slice rather than ``O(n_angle n^2)``. The interpolation along
the detector is band-limited (periodic sinc over the padded length ``L``), not linear.
The filter is the spatial Ram-Lak kernel (Kak & Slaney [1], eq. 61), whose DFT does not zero
the mean, sampled on ``L = 2 n`` points with edge-value padding (no cupping for samples wider
than the field of view), times a window (Shepp-Logan by default; :func:`filter_response`).
The filtered projection is then cut back to the detector and a margin of ``n / 16`` on each
side (``m``, the next fast length from ``1.125 n``) and transformed again, so the NUFFT sees
``m / 2 + 1`` points per angle instead of ``n + 1``: the band-limited interpolation is
periodic over the cut instead of over the padded length, which changes little inside the
field of view (the detector covers ``x . theta`` there; Shepp-Logan at 512^2 x 720: error
0.0146 either way; a sample 1.4 times wider than the field: 0.0006 rms and at most 1 % of the
image maximum at the field's edge) and nearly halves the NUFFT's spreading. Two slices are
packed as ``a + i b`` (one complex FFT per angle for both; gridrec's trick): the points carry
the first's coefficients and their mirror images the second's, so the transform's real part is
the first image and its imaginary part the second.

Noise: for uncorrelated projection noise of variance ``v``, the reconstruction is
``f(x) = dtheta sum_kj h(x . theta_k - s_j) p_kj`` with the band-limited kernel ``h``, so::

    var f(x) = dtheta^2 sum_k sum_j h(x . theta_k - s_j)^2 v_kj
             ~= dtheta^2 sum_k (h_d^2 * v_k)(x . theta_k)

where ``h_d^2`` is the squared filter at integer lags (exact for slowly varying ``v``: for a
band-limited ``h``, ``sum_j h(t - j)^2`` does not depend on ``t``, Parseval). The variance map
is therefore one more back-projection of ``v`` through the squared filter: no noise
simulation and no second reconstruction of random draws.

:class:`FourierFBP` also gives the unfiltered back-projection and its exact adjoint, the
projector (type-2 NUFFT), which the tests check with a dot test.

References
----------
.. [1] A. C. Kak and M. Slaney, *Principles of Computerized Tomographic Imaging*, IEEE Press
   (1988), ch. 3.3.
.. [2] A. H. Barnett, J. Magland and L. af Klinteberg, "A parallel nonuniform fast Fourier
   transform library based on an 'exponential of semicircle' kernel," SIAM J. Sci. Comput.
   41, C479-C504 (2019).
.. [3] B. A. Dowd et al., "Developments in synchrotron x-ray computed microtomography at the
   National Synchrotron Light Source," Proc. SPIE 3772 (1999) (gridrec).
"""

from __future__ import annotations

import threading

import numpy as np

from xtwin.recon._gridding import SIGMA as GRID_OVERSAMPLING
from xtwin.recon._gridding import PolarGridder

__all__ = ["FILTERS", "GRID_OVERSAMPLING", "FourierFBP", "filter_response", "ram_lak"]

#: FINUFFT tolerance (single precision) and upsampling factor of the projector and its
#: adjoint (the filtered back-projection grids with :mod:`xtwin.recon._gridding`).
NUFFT_EPS = 5e-3
UPSAMPFAC = 1.15


#: Filters: the Ram-Lak ramp times a window of the frequency nu (cycles per pixel).
FILTERS = ("shepp-logan", "ram-lak", "cosine", "hann")


def filter_response(n_pad: int, name: str = "shepp-logan") -> np.ndarray:
    """DFT (length ``n_pad``) of the reconstruction filter: Ram-Lak times a window.

    ``shepp-logan`` (default): ``sinc(nu)``, the standard compromise between resolution and
    noise (on a 512^2 phantom it gives both a lower noise-free error and the same noise as
    ASTRA's Ram-Lak with linear interpolation); ``ram-lak``: no window (sharpest, noisiest);
    ``cosine``: ``cos(pi nu)``; ``hann``: ``(1 + cos(2 pi nu)) / 2``.
    """
    h = ram_lak(n_pad)
    nu = np.abs(np.fft.fftfreq(n_pad))
    windows = {
        "ram-lak": np.ones_like(nu),
        "shepp-logan": np.sinc(nu),
        "cosine": np.cos(np.pi * nu),
        "hann": 0.5 * (1 + np.cos(2 * np.pi * nu)),
    }
    if name not in windows:
        raise ValueError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}")
    return h * windows[name]


def ram_lak(n_pad: int) -> np.ndarray:
    """DFT (length ``n_pad``) of the spatial Ram-Lak kernel for unit detector pixels.

    Parameters
    ----------
    n_pad : int
        Padded detector length.

    Returns
    -------
    ndarray, shape (n_pad,)
        Real filter response ``H[m]`` at ``numpy.fft.fftfreq(n_pad)``.
    """
    k = np.rint(np.fft.fftfreq(n_pad) * n_pad).astype(np.int64)  # integer lags, exactly
    h = np.zeros(n_pad)
    h[0] = 0.25
    odd = np.abs(k) % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    return np.fft.fft(h).real


#: The packed filter's ramp for no shift.
_NO_RAMP = np.empty(0, np.complex64)


class FourierFBP:
    """Parallel-beam geometry of one slice, with its NUFFT plans' points precomputed.

    Parameters
    ----------
    n_col : int
        Detector columns; the slice is ``n_col x n_col`` pixels.
    theta_deg : ndarray
        Projection angles in degrees (ASTRA's parallel-beam convention, so results match
        ASTRA's orientation).
    center_offset_px : float
        Rotation axis minus detector centre ``(n_col - 1) / 2``, in pixels.
    eps : float
        FINUFFT's tolerance for :meth:`project` and :meth:`backproject` (the filtered
        back-projection's gridding has a fixed kernel: about 1e-3 of the image's rms).
    filter_name : str
        One of :data:`FILTERS`.
    field : str
        ``"disc"`` (default): :meth:`fbp` is exact inside the disc that stays on the detector
        at every angle (the field of view; outside it the filtered projections wrap around
        the detector); ``"padded"``: over the whole square and for shifted axes, as a
        reprojection or an axis search needs (the NUFFT takes the filtered projections over
        the padded length: twice the points).

    Notes
    -----
    Every call uses one thread: call it from several threads for parallel slices (the
    compiled loops release the GIL). Results do not depend on the thread; :meth:`fbp` pairs
    consecutive slices of a batch in one transform, so a slice's last bits depend on its
    partner (:meth:`fbp_with_variance` pairs each slice with its own variance map and does
    not depend on the batch).
    """

    def __init__(
        self,
        n_col: int,
        theta_deg: np.ndarray,
        center_offset_px: float = 0.0,
        *,
        eps: float = NUFFT_EPS,
        filter_name: str = "shepp-logan",
        field: str = "disc",
    ) -> None:
        if field not in ("disc", "padded"):
            raise ValueError(f"field {field!r} is neither 'disc' nor 'padded'")
        theta = np.radians(np.asarray(theta_deg, dtype=np.float64))
        self.n_col = int(n_col)
        self.n_angle = theta.size
        self.n_pad = 2 * self.n_col
        self.pad = (self.n_pad - self.n_col) // 2
        self.eps = float(eps)
        self.center_offset_px = float(center_offset_px)
        self.dtheta = np.pi / self.n_angle
        n_half = self.n_pad // 2 + 1
        # coordinate of padded sample 0 along the detector (the axis sits at s = 0)
        s0 = -self.pad - (self.n_col - 1) / 2.0 - self.center_offset_px
        # the padded length's points: the projector and its adjoint, and fbp's "padded" field
        self._local = threading.local()
        self._ramps: dict[float, np.ndarray] = {}
        self._padded = _PolarGeometry(self.n_col, theta, s0, self.pad, self.n_pad)
        h = filter_response(self.n_pad, filter_name)
        h_d = np.fft.ifft(h).real
        h_sq = np.fft.fft(h_d**2).real
        # full-length responses (the packed pairs' complex FFT) and their halves (rfft)
        self._h = h.astype(np.float32)
        self._h_sq = h_sq.astype(np.float32)
        self._ramp = self._h[:n_half]
        # the cut reaches n / 16 beyond each end of the detector: where the filtered
        # projections wrap around, their band-limited interpolation rings, and at the edge of
        # the field of view of a sample wider than the field that costs up to 11-15 % of the
        # image maximum without a margin and 1 % with this one (512 and 128 columns)
        margin = -(-self.n_col // 16)
        self._fbp = (
            _PolarGeometry(self.n_col, theta, s0, self.pad, self.n_col + 2 * margin)
            if field == "disc"
            else self._padded
        )
        # FINUFFT's options for the adjoint of the projector (points in the order given;
        # FFTW's deterministic ESTIMATE plans, so every process computes the same bits)
        self._nufft_opts = {
            "eps": self.eps,
            "isign": 1,
            "nthreads": 1,
            "upsampfac": UPSAMPFAC,
            "spread_sort": 0,
        }

    # -- core -----------------------------------------------------------------------------
    def _spectrum(self, sinos: np.ndarray, *, edge: bool) -> np.ndarray:
        s = np.asarray(sinos, dtype=np.float32)
        self._check_shape(s.shape[-2:])
        width = [(0, 0)] * (s.ndim - 1) + [(self.pad, self.n_pad - self.n_col - self.pad)]
        padded = np.pad(s, width, mode="edge" if edge else "constant")
        from scipy import fft

        return fft.rfft(padded, axis=-1)  # float32 in, complex64 out

    def _filtered(self, sinos: np.ndarray, response: np.ndarray) -> np.ndarray:
        """Filtered sinograms cut to the detector, as the cut geometry's spectra times its
        phases: ``(batch, n_angle, m // 2 + 1)`` complex64."""
        spec = self._cut_spectrum(sinos, response)
        spec *= self._fbp.phase
        return spec

    def _cut_spectrum(self, sinos: np.ndarray, response: np.ndarray) -> np.ndarray:
        """Real FFTs of the filtered sinograms cut to the fbp geometry (``response``: the
        filter's non-negative frequencies): ``(batch, n_angle, m // 2 + 1)`` complex64."""
        from scipy import fft

        spec = self._spectrum(sinos, edge=True)
        spec *= response
        g = self._fbp
        if g.m < self.n_pad:
            q = fft.irfft(spec, n=self.n_pad, axis=-1)[..., g.start : g.start + g.m]
            spec = fft.rfft(q, axis=-1)
        return spec

    def _filtered_pair(
        self,
        sa: np.ndarray,
        sb: np.ndarray | None,
        h_a: np.ndarray,
        h_b: np.ndarray,
        shift_px: float = 0.0,
    ) -> np.ndarray:
        """Spectra of two sinograms packed as ``a + i b`` (``sb=None``: one), edge-padded,
        filtered with ``h_a`` and ``h_b``, their content moved by ``-shift_px`` along the
        detector, and cut to the fbp geometry: ``(n_angle, m)`` complex64 in FFT order, in
        this thread's buffer (overwritten by the next call)."""
        from scipy import fft

        from xtwin.recon._gridding_kernels import filter_pair, pack_pair

        g = self._fbp
        bufs = getattr(self._local, "filter_buffers", None)
        if bufs is None:
            full = np.empty((self.n_angle, self.n_pad), np.complex64)
            cut = np.empty((self.n_angle, g.m), np.complex64) if g.m < self.n_pad else full
            bufs = self._local.filter_buffers = (full, cut)
        full, cut = bufs
        none = np.empty((0, self.n_col), np.float32)
        pack_pair(self._checked(sa), none if sb is None else self._checked(sb), self.pad, full)
        full = fft.fft(full, axis=-1, overwrite_x=True, workers=1)
        if h_a is h_b and not shift_px:
            full *= h_a
        else:
            filter_pair(full, h_a, h_b, self._shift_ramp(shift_px) if shift_px else _NO_RAMP)
        if g.m == self.n_pad:
            return full
        full = fft.ifft(full, axis=-1, overwrite_x=True, workers=1)
        cut[...] = full[:, g.start : g.start + g.m]
        return fft.fft(cut, axis=-1, overwrite_x=True, workers=1)

    def _shift_ramp(self, shift_px: float) -> np.ndarray:
        """The padded spectrum's phase ramp that moves a projection's content by
        ``-shift_px`` (as :func:`xtwin.shifts.shift_rows` by ``-shift_px`` does), its Nyquist
        term real (the cosine), so a real signal stays real; one per shift, kept."""
        ramps = self._ramps
        ramp = ramps.get(shift_px)
        if ramp is None:
            f = np.fft.fftfreq(self.n_pad)
            r = np.exp(2j * np.pi * f * shift_px)
            r[self.n_pad // 2] = np.cos(np.pi * shift_px)
            ramp = r.astype(np.complex64)
            if len(ramps) > 64:  # a few energies' shifts in practice
                ramps.clear()
            ramps[shift_px] = ramp
        return ramp

    def _checked(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float32)  # strided rows are read in place
        self._check_shape(s.shape)
        return s

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != (self.n_angle, self.n_col):
            raise ValueError(
                f"sinograms of shape {tuple(shape)}; expected ({self.n_angle}, {self.n_col})"
            )

    def _fbp_pairs(self, s: np.ndarray, h: np.ndarray, scale: float) -> np.ndarray:
        """Filtered back-projection of a batch with the response ``h``, two slices per
        transform (an odd batch's last alone), times ``scale``."""
        b = s.shape[0]
        images = np.empty((b, self.n_col, self.n_col), dtype=np.float32)
        gridder = self._fbp.gridder()
        phase = self._fbp.phase
        for i in range(0, b - 1, 2):
            y = self._filtered_pair(s[i], s[i + 1], h, h)
            gridder.spectra(y, phase, images[i], images[i + 1], scale, scale)
        if b % 2:  # a lone slice: real FFTs filter it for half the cost of a packed pair
            y = self._cut_spectrum(s[b - 1 :], h[: self.n_pad // 2 + 1])[0]
            gridder.spectra(y, phase, images[b - 1], None, scale, scale)
        return images

    def _adjoint_nufft(
        self, coef: np.ndarray, geom: _PolarGeometry, paired: bool = True
    ) -> np.ndarray:
        """The real part of the type-1 sum of ``coef`` (spectra times ``geom``'s phases) over
        ``geom``'s polar points: two slices per transform through the geometry's gridding (see
        :mod:`xtwin.recon._gridding`; an odd batch's last slice alone); ``paired=False``: one
        slice per FINUFFT transform on the points of :meth:`project` (its exact adjoint)."""
        b = coef.shape[0]
        flat = coef.reshape(b, -1)
        images = np.empty((b, self.n_col, self.n_col), dtype=np.float32)
        if not paired:
            import finufft

            out = finufft.nufft2d1(
                geom.pts[0],
                geom.pts[1],
                np.ascontiguousarray(flat),
                (self.n_col, self.n_col),
                **self._nufft_opts,
            )
            images[:] = out.reshape(b, self.n_col, self.n_col).real
            return images
        gridder = geom.gridder()
        for i in range(0, b - 1, 2):
            gridder.coefficients(flat[i], flat[i + 1], images[i], images[i + 1])
        if b % 2:
            gridder.coefficients(flat[b - 1], None, images[b - 1])
        return images

    def _batched(self, sinos: np.ndarray) -> tuple[np.ndarray, bool]:
        s = np.asarray(sinos)
        return (s[None], True) if s.ndim == 2 else (s, False)

    # -- public ---------------------------------------------------------------------------
    def fbp(self, sinos: np.ndarray) -> np.ndarray:
        """Filtered back-projection of ``(n_angle, n_col)`` or ``(batch, n_angle, n_col)``.

        Returns
        -------
        ndarray, float32
            Attenuation per pixel, ``(n_col, n_col)`` or ``(batch, n_col, n_col)``; axis 0 is
            the image row (ASTRA's orientation).
        """
        s, single = self._batched(sinos)
        out = self._fbp_pairs(s, self._h, self.dtheta)
        return out[0] if single else out

    def fbp_variance(self, var_sinos: np.ndarray) -> np.ndarray:
        """Variance of :meth:`fbp` for uncorrelated projection noise of variance ``var_sinos``.

        Returns
        -------
        ndarray, float32
            Per-pixel variance (non-negative), same layout as :meth:`fbp`.
        """
        s, single = self._batched(var_sinos)
        out = self._fbp_pairs(s, self._h_sq, self.dtheta**2)
        np.maximum(out, 0.0, out=out)
        return out[0] if single else out

    def fbp_with_variance(
        self, sinos: np.ndarray, var_sinos: np.ndarray, shifts_px: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fbp` and :meth:`fbp_variance` of the same slices in one batch of transforms
        (the images and their variance maps paired: one fine-grid FFT per slice instead of
        two). Same values as the two calls, to the NUFFT's tolerance.

        Parameters
        ----------
        sinos, var_sinos : ndarray, shape (n_angle, n_col) or (batch, n_angle, n_col)
            Sinograms and their variances.
        shifts_px : ndarray, shape (batch,), optional
            Per slice, a detector shift to undo: slice ``i``'s content is moved by
            ``-shifts_px[i]`` along the detector (an energy's registration) by a phase ramp
            in its filter, at no cost; the variances as the values (what
            :func:`xtwin.shifts.shift_rows` gives).

        Returns
        -------
        (ndarray, ndarray)
            Attenuation and its variance, each as :meth:`fbp` returns it.
        """
        s, single = self._batched(sinos)
        v, _ = self._batched(var_sinos)
        b = s.shape[0]
        gridder = self._fbp.gridder()
        mu = np.empty((b, self.n_col, self.n_col), dtype=np.float32)
        var = np.empty_like(mu)
        shifts = np.zeros(b) if shifts_px is None else np.broadcast_to(shifts_px, (b,))
        for i in range(b):  # the image of each slice paired with its variance map
            y = self._filtered_pair(s[i], v[i], self._h, self._h_sq, float(shifts[i]))
            gridder.spectra(y, self._fbp.phase, mu[i], var[i], self.dtheta, self.dtheta**2)
        np.maximum(var, 0.0, out=var)
        return (mu[0], var[0]) if single else (mu, var)

    def fbp_offsets(self, sino: np.ndarray, offsets_px: np.ndarray) -> np.ndarray:
        """:meth:`fbp` of one sinogram for several trial axis offsets (one NUFFT call).

        An axis offset ``c`` only multiplies the spectrum by ``exp(2 pi i nu c)`` relative to
        this geometry's own offset, so the trials share the NUFFT points.

        Returns
        -------
        ndarray, shape (len(offsets_px), n_col, n_col), float32
        """
        spec = self._filtered(np.asarray(sino)[None], self._ramp)[0]
        rel = np.asarray(offsets_px, dtype=np.float64) - self.center_offset_px
        ramps = np.exp(2j * np.pi * rel[:, None] * self._fbp.nu[None, :]).astype(np.complex64)
        out = self._adjoint_nufft(spec[None] * ramps[:, None, :], self._fbp)
        return out * np.float32(self.dtheta)

    def backproject(self, sinos: np.ndarray) -> np.ndarray:
        """Unfiltered back-projection (zero padding): the exact adjoint of :meth:`project`."""
        s, single = self._batched(sinos)
        g = self._padded
        out = self._adjoint_nufft(self._spectrum(s, edge=False) * g.phase, g, paired=False)
        return out[0] if single else out

    def project(self, images: np.ndarray) -> np.ndarray:
        """Forward projection with the band-limited kernel (type-2 NUFFT); adjoint of
        :meth:`backproject`.

        Parameters
        ----------
        images : ndarray, shape (n_col, n_col) or (batch, n_col, n_col)

        Returns
        -------
        ndarray, shape (n_angle, n_col) or (batch, n_angle, n_col), float32
        """
        images = np.asarray(images)
        single = images.ndim == 2
        im = images[None] if single else images
        out = np.empty((im.shape[0], self.n_angle, self.n_col), np.float32)
        # a few images at a time: the full-grid spectra are complex128 (16 slices of 512
        # columns at 361 angles took 190 MB at once); each image is projected on its own
        per = max(1, _PROJECT_CHUNK_BYTES // (self.n_angle * self.n_pad * 16))
        for k in range(0, im.shape[0], per):
            out[k : k + per] = self._project(im[k : k + per])
        return out[0] if single else out

    def _project(self, images: np.ndarray) -> np.ndarray:
        import finufft

        im = np.asarray(images, dtype=np.complex64)
        b = im.shape[0]
        g = self._padded
        vals = finufft.nufft2d2(
            g.pts[0],
            g.pts[1],
            np.ascontiguousarray(im),
            eps=self.eps,
            isign=-1,
            nthreads=1,
            upsampfac=UPSAMPFAC,
        )
        spec = vals.reshape(b, self.n_angle, -1) * g.phase.conj()
        # the adjoint of "rfft, then weights": sum over m of conj(kernel) -> real part of an
        # inverse-direction transform, evaluated on the padded grid
        full = np.fft.ifft(_hermitian_full(spec, self.n_pad), axis=-1) * self.n_pad
        return full.real[..., self.pad : self.pad + self.n_col]


class _PolarGeometry:
    """The polar points and phases of filtered projections cut to ``m`` samples (the next
    fast even length from ``reach``, at most the padded length, which is then kept whole),
    centred on the detector, starting at padded sample ``start``."""

    def __init__(
        self, n_col: int, theta: np.ndarray, s0_padded: float, pad: int, reach: int
    ) -> None:
        from scipy import fft

        m = fft.next_fast_len(max(n_col, reach), real=True)
        m += m % 2
        m = min(m, 2 * n_col)  # the padded length (even; n_col + 2 pad for even n_col only)
        self.n_col = n_col
        self.m = m
        self.start = pad - (m - n_col) // 2
        s0 = s0_padded + self.start  # coordinate of the cut's first sample
        n_half = m // 2 + 1
        self.nu = np.arange(n_half) / m
        om = 2.0 * np.pi * self.nu
        w_col = (om[None, :] * np.cos(theta)[:, None]).ravel()
        w_row = (-om[None, :] * np.sin(theta)[:, None]).ravel()
        delta = 0.5 if n_col % 2 == 0 else 0.0  # pixel centres vs NUFFT mode indices
        weight = np.full(n_half, 2.0)
        weight[0] = 1.0
        weight[-1] = 0.0  # Nyquist dropped: the interpolation kernel stays real and even
        phase = np.exp(-2j * np.pi * self.nu * s0)[None, :] * np.exp(
            1j * delta * (w_col + w_row)
        ).reshape(theta.size, n_half)
        self.phase = (phase * weight[None, :] / m).astype(np.complex64)
        self.pts = (w_row.astype(np.float32), w_col.astype(np.float32))
        self._gridder: PolarGridder | None = None
        self._lock = threading.Lock()

    def gridder(self) -> PolarGridder:
        """The points' gridding onto the slice (made once, shared by the threads)."""
        with self._lock:
            if self._gridder is None:
                self._gridder = PolarGridder(self.pts[0], self.pts[1], self.n_col)
            return self._gridder


#: The complex128 full-grid spectra :meth:`FourierFBP.project` makes at once (about).
_PROJECT_CHUNK_BYTES = 24 << 20


def _hermitian_full(half: np.ndarray, n_pad: int) -> np.ndarray:
    """Place the non-negative-frequency terms of a one-sided sum on a full FFT grid (zeros
    elsewhere), so that ``Re(ifft(.) * n_pad)`` evaluates ``Re(sum_m c_m e^{+2 pi i m j / L})``.
    """
    full = np.zeros(half.shape[:-1] + (n_pad,), dtype=np.complex128)
    full[..., : half.shape[-1]] = half
    return full
