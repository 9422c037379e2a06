"""The offset between the scan's energy scale and the standards': given, or fitted on a quick
XANES of the same sample (or on the scan's own projections) before the calibration is made."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io.source import ScanSource, open_scan
from xtwin.memory import READ_THREADS
from xtwin.pipeline._read import RowReader, normalized_rows, read_sample
from xtwin.pipeline._references import References
from xtwin.pipeline.options import ProcessOptions
from xtwin.prep.normalize import exposure_ratios
from xtwin.retrieve.energy_scale import EnergyOffset, fit_energy_offset

#: Angles of a quick scan (or of the scan) used for the fit, at most.
MAX_ANGLES = 4

#: The images are binned to at most this many pixels along each side for the fit.
MAX_SIDE_PX = 256

#: Smallest correlation of the quick scan's and the scan's images at a shared angle.
MIN_SAME_SAMPLE_CORRELATION = 0.85


def energy_offset(
    options: ProcessOptions, source: ScanSource, refs: References, edge_eV: float
) -> EnergyOffset | None:
    """The offset the calibration is made with (None: none asked for).

    Raises
    ------
    XtwinInputError
        A quick scan that cannot be read, does not span the edge, or is of another sample or
        detector; a scan with too few energies for ``scan``; no reference spectra.
    """
    if options.energy_offset_eV is not None:
        return EnergyOffset(float(options.energy_offset_eV))
    what = options.energy_calibration
    if what is None:
        return None
    if not refs.standards:
        raise XtwinInputError(
            "an energy calibration needs the reference spectra (--lithiated and --delithiated, "
            "or --calibration-series)"
        )
    if what == "scan":
        e = source.header.energy_eV
        if e.size < 4:
            raise XtwinInputError(
                f"--energy-calibration scan needs four or more energies in the scan ({e.size} "
                "here): with three the end-member model has no freedom left to see an "
                "offset; take a quick XANES of the sample and pass its file instead"
            )
        od, var = _registered_od(source, refs)
        return _fit(od, var, e, refs, edge_eV, "scan", min_energies=4)
    paths = quick_paths(what)
    with open_scan([str(p) for p in paths]) as quick:
        od, var = _registered_od(quick, refs)
        _check_same_sample(quick, source, od)
        name = paths[0].name if len(paths) == 1 else f"{len(paths)} files"
        return _fit(od, var, quick.header.energy_eV, refs, edge_eV, f"quick-xanes {name}")


def quick_paths(what: str) -> list[Path]:
    """The quick XANES's files: one scan file, a folder of one file per energy (its ``.h5``
    and ``.hdf5`` files), or a glob pattern (``quick/E*.h5``).

    Raises
    ------
    XtwinInputError
        Nothing there.
    """
    path = Path(what)
    if any(c in what for c in "*?["):
        found = sorted(path.parent.glob(path.name))
    elif path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".h5", ".hdf5"))
    else:
        found = [path] if path.exists() else []
    if not found:
        raise XtwinInputError(
            f"the quick XANES {what} does not exist (or holds no .h5 scan file); pass the file "
            "of a quick XANES of this sample (or a folder or pattern of one file per energy), "
            "or 'scan' to fit the offset on the scan itself"
        )
    return found


def _fit(
    od: np.ndarray,
    var: np.ndarray,
    energy_eV: np.ndarray,
    refs: References,
    edge_eV: float,
    method: str,
    min_energies: int = 8,
) -> EnergyOffset:
    n_e = od.shape[0]
    return fit_energy_offset(
        od.reshape(n_e, -1),
        energy_eV,
        refs.standards,
        od_var=var.reshape(n_e, -1),
        edge_eV=edge_eV,
        method=method,
        min_energies=min_energies,
    )


def _angles(n_angle: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_angle - 1, min(MAX_ANGLES, n_angle)).round().astype(int))


def _registered_od(source: ScanSource, refs: References) -> tuple[np.ndarray, np.ndarray]:
    """Optical density (n_energy, n_angles, rows, cols) at a few angles and its variance,
    binned to at most :data:`MAX_SIDE_PX` a side, each energy registered onto the most
    absorbing one (shift, and the zone plate's magnification where it is found: over a
    quick XANES's 100 eV it reaches 1 %)."""
    from xtwin.pipeline._estimate.registration import register_energies
    from xtwin.prep.register import warp_image

    h = source.header
    ratio = exposure_ratios(h.exposure_s, h.flat_exposure_s, h.shape[0])
    idx = _angles(h.shape[1])
    n_e, _, n_r, n_c = h.shape
    dark = RowReader(source, ratio).dark
    parts = [
        normalized_rows(source, e, 0, n_r, float(ratio[e]), angles=idx, dark=dark)
        for e in range(n_e)
    ]
    b = max(1, int(np.ceil(max(n_r, n_c) / MAX_SIDE_PX)))
    r, c = n_r // b * b, n_c // b * b

    def binned(a: np.ndarray) -> np.ndarray:
        return a[:, :, :r, :c].reshape(n_e, idx.size, r // b, b, c // b, b).mean(axis=(3, 5))

    od = binned(np.stack([p[0] for p in parts]).astype(np.float64))
    var = binned(np.stack([p[1] for p in parts]).astype(np.float64)) / (b * b)
    if n_e > 1:
        ends = refs.standards[-1], refs.standards[0]
        contrast = np.abs(
            np.interp(h.energy_eV, ends[0].energy_eV, ends[0].flat)
            - np.interp(h.energy_eV, ends[1].energy_eV, ends[1].flat)
        )
        reg = register_energies(od.astype(np.float32), h.energy_eV, "auto", contrast)
        for e in range(n_e):
            (dy, dx), sc = reg.shifts[e], float(reg.scales[e])
            if dy or dx or sc != 1.0:
                for a in range(idx.size):
                    od[e, a] = warp_image(od[e, a], sc, dy, dx)
                    var[e, a] = warp_image(var[e, a], sc, dy, dx)
        # the edge rows and columns moved in are not the sample's: left out
        reach = np.abs(reg.scales - 1).max() * max(od.shape[2:]) / 2
        m = int(np.ceil(np.abs(reg.shifts).max() + reach)) + 1
        od[..., :m, :] = np.nan
        od[..., -m:, :] = np.nan
        od[..., :, :m] = np.nan
        od[..., :, -m:] = np.nan
    return od, var


def _check_same_sample(quick: ScanSource, scan: ScanSource, od: np.ndarray) -> None:
    """Refuse a quick scan of another detector (shape, pixel size) or, where it shares an
    angle with the scan, of another sample (its image does not match the scan's)."""
    q, s = quick.header, scan.header
    if q.shape[2:] != s.shape[2:]:
        raise XtwinInputError(
            f"the quick XANES has {q.shape[2]} x {q.shape[3]} detector pixels, the scan "
            f"{s.shape[2]} x {s.shape[3]}: take it with the same detector and binning"
        )
    if q.pixel_size_m > 0 and s.pixel_size_m > 0:
        ratio = q.pixel_size_m / s.pixel_size_m
        if abs(ratio - 1) > 0.02:
            raise XtwinInputError(
                f"the quick XANES's pixel is {q.pixel_size_m * 1e9:.1f} nm, the scan's "
                f"{s.pixel_size_m * 1e9:.1f} nm: take it with the same optics and binning"
            )
    idx = _angles(q.shape[1])
    d = np.abs(((q.theta_deg[idx][:, None] - s.theta_deg[None, :]) + 180) % 360 - 180)
    if d.min() > 1.0:
        return  # no shared angle: the images cannot be compared
    qa, sa = np.unravel_index(int(np.argmin(d)), d.shape)
    qe = int(np.argmax(q.energy_eV))
    se = int(np.argmax(s.energy_eV))
    mine = _registered_od_one(scan, int(sa), se, od.shape[2:])
    corr = _best_correlation(od[qe, qa], mine)
    if corr < MIN_SAME_SAMPLE_CORRELATION:
        raise XtwinInputError(
            f"the quick XANES at {q.theta_deg[idx][qa]:.1f} deg does not look like the scan at "
            f"{s.theta_deg[sa]:.1f} deg (correlation {corr:.2f} < "
            f"{MIN_SAME_SAMPLE_CORRELATION}): is it of this sample? pass the quick XANES "
            "of the sample that was scanned"
        )


def _registered_od_one(source: ScanSource, angle: int, energy: int, shape: tuple) -> np.ndarray:
    h = source.header
    reader = RowReader(source, exposure_ratios(h.exposure_s, h.flat_exposure_s, h.shape[0]))
    img = read_sample(reader, np.array([angle]), READ_THREADS)[0][energy, 0]
    b = max(1, int(np.ceil(max(img.shape) / MAX_SIDE_PX)))
    r, c = shape[0] * b, shape[1] * b
    return img[:r, :c].reshape(shape[0], b, shape[1], b).mean(axis=(1, 3))


def _best_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two images after the best shift between them."""
    from skimage.registration import phase_cross_correlation

    from xtwin.shifts import shift_image_stack

    a = np.nan_to_num(a - np.nanmean(a))
    b = np.nan_to_num(b - np.nanmean(b))
    sh = phase_cross_correlation(a, b, upsample_factor=4, normalization=None)[0]
    b = shift_image_stack(b, float(sh[0]), float(sh[1]))
    m = int(np.ceil(np.abs(sh).max())) + 1
    a, b = a[m:-m, m:-m], b[m:-m, m:-m]
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
