"""``xtwin info``: a human summary of any file xtwin reads or writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xtwin.errors import XtwinInputError


def describe(path: str | os.PathLike) -> str:
    """Describe a scan, truth or Li-map file, any other HDF5 file, or a reference spectrum."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise XtwinInputError(f"{path} does not exist; check the path")
    import olefile

    if olefile.isOleFile(str(path)):
        from xtwin.io.xradia import read_xrm

        x = read_xrm(path)
        kind = "flat-field reference" if x.is_reference else "sample"
        return (
            f"{path}: Xradia {kind}, {x.images.shape[0]} image(s) of {x.images.shape[1]} x "
            f"{x.images.shape[2]} {x.images.dtype}, {x.pixel_size_m * 1e9:.1f} nm pixels, "
            f"energy {np.unique(x.energy_eV).tolist()} eV, angle "
            f"{np.round(np.unique(x.angle_deg), 3).tolist()} deg, exposure "
            f"{np.unique(x.exposure_s).round(3).tolist()} s"
            + "".join(f"\n  note: {n}" for n in x.notes)
        )
    if not h5py.is_hdf5(path):
        from xtwin.physics.spectra import normalize, read_spectrum

        try:
            norm = normalize(read_spectrum(path))
        except XtwinInputError as exc:
            raise XtwinInputError(
                f"{path} is neither HDF5 nor a readable spectrum: {exc}"
            ) from None
        s = norm.summary()
        return (
            f"{path}: reference spectrum, {norm.energy_eV.size} points "
            f"{norm.energy_eV[0]:.1f}-{norm.energy_eV[-1]:.1f} eV\n"
            + "\n".join(f"  {k}: {v}" for k, v in s.items() if k != "source")
        )
    from xtwin.io.limap import is_attenuation_map

    with h5py.File(path, "r") as f:
        kind = (
            "Li-map file"
            if "/li/lithiation" in f
            else "attenuation map"
            if is_attenuation_map(f)
            else "truth file"
            if "/truth/lithiation" in f
            else "scan file"
            if "/exchange/data" in f
            else "HDF5 file"
        )
        lines = [f"{path}: {kind}"]
        f.visititems(
            lambda name, obj: (
                lines.append(f"  /{name}  {obj.shape} {obj.dtype}")
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    if kind == "scan file":
        from xtwin.io.scan import read_header

        h = read_header(path)[0]
        n_e, n_a, n_r, n_c = h.shape
        energies = (
            f"{n_e} energies {np.round(h.energy_eV, 2).tolist()} eV"
            if h.energy_known
            else "1 energy (not recorded)"
        )
        pixel = (
            "pixels (size not recorded)"
            if h.pixel_size_assumed
            else (f"pixels of {h.pixel_size_m * 1e9:.1f} nm")
        )
        angles = (
            f"{n_a} angles {h.theta_deg.min():.1f} to {h.theta_deg.max():.1f} deg"
            if n_a > 1
            else "1 angle"
        )
        lines.append(
            f"  {energies}, {angles}, {n_r} x {n_c} {pixel}, {h.n_flat} flats"
            f"{' per energy' if n_e > 1 else ''}, {h.n_dark} darks"
        )
        lines += [f"  note: {n}" for n in h.notes]
    elif kind == "attenuation map":
        from xtwin.io.limap import read_mu_summary

        mu, mu_sig, units = read_mu_summary(path)
        lines.append(
            f"  single-energy reconstruction: median mu {mu:.4g} +- {mu_sig:.2g} {units}; "
            "no lithiation (one energy)"
        )
    elif kind == "Li-map file":
        from xtwin.io.limap import read_limap

        lm = read_limap(path)
        n_ni = int(lm.mask.sum())
        if lm.mode == "edge-jump" or not np.isfinite(lm.lithiation).any():
            jump = lm.edge_jump_per_m[lm.mask]
            unit = "1/m" if lm.is_tomography else "optical density"
            med = f"{float(np.median(jump)):.4g} {unit}" if jump.size else "none"
            lines.append(
                f"  {lm.mode} map: Ni voxels {n_ni}, median Ni edge jump {med}; no lithiation "
                "(two energies give the edge jump: a third, on the edge, gives w)"
            )
        else:
            ok = np.isfinite(lm.lithiation)
            lines.append(
                f"  {lm.mode} map: Ni voxels {n_ni}, median lithiation "
                f"{float(np.median(lm.lithiation[ok])):.3f} +- "
                f"{float(np.median(lm.sigma[ok])):.3f}"
            )
    elif kind == "truth file":
        from xtwin.io.truth import read_truth

        tr = read_truth(path)
        lines.append(
            f"  {len(tr.particles.get('id', []))} particles, mean lithiation "
            f"{np.nanmean(tr.lithiation):.3f}"
        )
    return "\n".join(lines)
