"""The systematics corrected, on scans written by independent code (the spheres and xraylib
model of ``test_pipeline_independent``, h5py directly): an energy offset between the scan and
the standards fitted on a quick 2D XANES (or the scan itself), a non-linear Ni chemistry
retrieved on a measured calibration series, and the bad inputs of both refused with exit 2.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.special import erf
from test_pipeline_independent import (
    N_ANG,
    N_COL,
    N_ROW,
    PIXEL_UM,
    SPHERES,
    W_TRUE,
    mu_nmc_per_um,
    write_references,
)

from xtwin.cli import main

SCAN_EV = (8320.0, 8347.0, 8400.0)
QUICK_EV = tuple(np.round(np.linspace(8300.0, 8420.0, 25), 1))


def _transmission(mu_per_um, theta_deg: np.ndarray, spheres=SPHERES) -> np.ndarray:
    """Analytic transmission of the spheres (4x4 supersampled); ``mu_per_um(w)`` gives each
    sphere's attenuation."""
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    u = ((np.arange(N_COL) - (N_COL - 1) / 2)[:, None] + sub).ravel() * PIXEL_UM
    v = (np.arange(N_ROW)[:, None] + sub + 0.5).ravel() * PIXEL_UM
    out = np.empty((len(theta_deg), N_ROW, N_COL))
    for k, th in enumerate(np.radians(theta_deg)):
        line = np.zeros((v.size, u.size))
        for ((z0, x0, y0), r), w in zip(spheres, W_TRUE):
            z0, x0, y0, r = (a * PIXEL_UM for a in (z0, x0, y0, r))
            u0 = x0 * np.cos(th) + y0 * np.sin(th)
            d2 = (u[None, :] - u0) ** 2 + (v[:, None] - z0) ** 2
            line += 2 * np.sqrt(np.clip(r**2 - d2, 0, None)) * mu_per_um(w)
        out[k] = np.exp(-line).reshape(N_ROW, 4, N_COL, 4).mean(axis=(1, 3))
    return out


def _write(path, energies, theta, mu_of, rng, i0=50000.0) -> None:
    """One Data Exchange file; ``mu_of(E, w)`` the attenuation per um at recorded energy E."""
    data = [
        rng.poisson(i0 * _transmission(lambda w, e=e: mu_of(e, w), theta)).astype(np.uint16)
        for e in energies
    ]
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.stack(data)
        f["/exchange/data_white"] = rng.poisson(i0, (len(energies), 6, N_ROW, N_COL)).astype(
            np.uint16
        )
        f["/exchange/theta"] = theta
        f["/measurement/instrument/monochromator/energy"] = list(energies)
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = PIXEL_UM * 1e-6


def _sphere_means(out) -> np.ndarray:
    from xtwin.io.limap import read_limap

    lm = read_limap(out)
    means = []
    for ((z0, _, _), _r), _w in zip(SPHERES, W_TRUE):
        core = lm.lithiation[int(z0) - 2 : int(z0) + 3]
        vals = core[np.isfinite(core)]
        assert vals.size > 100
        means.append(float(np.mean(vals)))
    return np.asarray(means)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return write_references(tmp_path_factory.mktemp("refs"))


@pytest.fixture(scope="module", params=[0.3, -0.25])
def offset_files(request, tmp_path_factory):
    """The scan and a quick XANES (25 energies, 0 and 90 degrees) whose monochromator reads
    ``delta`` eV below the standards' scale."""
    delta = request.param
    d = tmp_path_factory.mktemp("offset")
    rng = np.random.default_rng(11)

    def mu_of(e, w):
        return mu_nmc_per_um(e + delta, w)

    theta = np.linspace(0, 180, N_ANG, endpoint=False)
    _write(d / "scan.h5", SCAN_EV, theta, mu_of, rng)
    _write(d / "quick.h5", QUICK_EV, np.array([0.0, 90.0]), mu_of, rng)
    return d, delta


def _process(d, refs, out, *extra) -> int:
    return main(
        [
            "process",
            str(d / "scan.h5"),
            "--lithiated",
            str(refs["lith"]),
            "--delithiated",
            str(refs["delith"]),
            "-o",
            str(out),
            *extra,
        ]
    )


def test_energy_offset_fitted_on_quick_xanes(offset_files, refs, capsys):
    """The offset within 0.05 eV of the truth, the spheres as with the true offset given by
    hand (without the calibration the same scan is off by several hundredths), the offset and
    its uncertainty in the provenance and on the terminal, and its uncertainty in
    /li/systematic."""
    from xtwin.io.limap import read_limap

    d, delta = offset_files
    out = d / f"cal{delta}.h5"
    assert _process(d, refs, out, "--energy-calibration", str(d / "quick.h5")) == 0
    err = capsys.readouterr().err
    assert "energy offset" in err and "warning" not in err
    prov = read_limap(out).provenance
    rec = prov["energy_offset_eV"]
    assert rec["value"] == pytest.approx(delta, abs=0.05)
    assert 0 < rec["sigma"] < 0.05 and rec["n_pixels"] > 100
    means = _sphere_means(out)
    known = d / f"known{delta}.h5"
    assert _process(d, refs, known, "--energy-offset-ev", str(delta)) == 0
    # as good as the true offset given by hand; the spheres' means (partial volume at
    # their surface included) within 0.02 of the truth
    np.testing.assert_allclose(means, _sphere_means(known), atol=0.01)
    np.testing.assert_allclose(means, W_TRUE, atol=0.02)
    raw = d / f"raw{delta}.h5"
    assert _process(d, refs, raw) == 0
    assert np.max(np.abs(_sphere_means(raw) - W_TRUE)) > 0.05  # the effect is real
    lm = read_limap(out)
    assert np.nanmedian(lm.systematic) > np.nanmedian(read_limap(known).systematic)


def test_quick_xanes_refused_when_it_cannot_calibrate(offset_files, refs, tmp_path, capsys):
    """A quick scan that does not span the edge, of another detector, or of another
    sample: exit 2 with the reason, and no output file."""
    d, _ = offset_files
    rng = np.random.default_rng(3)
    theta = np.array([0.0])
    narrow = tmp_path / "narrow.h5"
    _write(narrow, tuple(np.linspace(8340, 8355, 9)), theta, mu_nmc_per_um, rng)

    other = tmp_path / "other.h5"  # another sample: two large particles side by side
    two = [((20.0, -10.0, 0.0), 9.0), ((42.0, 9.0, 3.0), 11.0)]
    data = [
        rng.poisson(50000.0 * _transmission(lambda w, e=e: mu_nmc_per_um(e, w), theta, two))
        for e in QUICK_EV
    ]
    with h5py.File(other, "w") as f:
        f["/exchange/data"] = np.stack(data).astype(np.uint16)
        f["/exchange/data_white"] = rng.poisson(50000.0, (25, 6, N_ROW, N_COL)).astype(np.uint16)
        f["/exchange/theta"] = theta
        f["/measurement/instrument/monochromator/energy"] = list(QUICK_EV)
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = PIXEL_UM * 1e-6
    binned = tmp_path / "binned.h5"
    with h5py.File(d / "quick.h5") as src, h5py.File(binned, "w") as f:
        for k in ("/exchange/data", "/exchange/data_white"):
            a = src[k][...]
            f[k] = a[..., ::2, ::2]
        f["/exchange/theta"] = src["/exchange/theta"][...]
        f["/measurement/instrument/monochromator/energy"] = list(QUICK_EV)
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = 2 * PIXEL_UM * 1e-6
    for quick, words in (
        (narrow, "spanning the Ni K edge"),
        (other, "is it of this sample"),
        (binned, "same detector"),
        (tmp_path / "missing.h5", "does not exist"),
    ):
        out = tmp_path / "out.h5"
        assert _process(d, refs, out, "--energy-calibration", str(quick)) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
        assert not out.exists()
    out = tmp_path / "both.h5"
    args = ("--energy-calibration", "scan", "--energy-offset-ev", "0.2")
    assert _process(d, refs, out, *args) == 2
    assert "not both" in capsys.readouterr().err
    assert _process(d, refs, out, "--energy-calibration", "scan") == 2  # three energies
    assert "four or more energies" in capsys.readouterr().err


# -- a non-linear chemistry and its calibration series ---------------------------------------


def _edge(w):
    """Independent non-linear chemistry: the edge moves three times faster at low lithiation
    than at the top, and the white line sharpens with w (not a mixture of the end members)."""
    w = np.asarray(w, dtype=float)
    return 8347.8 - 2.3 * w * (1.5 - 0.5 * w), 1.8 + 0.9 * w


def _shape(e, w):
    edge, width = _edge(w)
    return 0.5 * (1 + erf((e - edge) / 2.0)) + 0.55 * np.exp(-0.5 * ((e - edge - 4.0) / width) ** 2)


@pytest.fixture(scope="module")
def series_files(tmp_path_factory):
    import xraylib

    d = tmp_path_factory.mktemp("series")
    rho = 4.74

    def bg(e):
        return xraylib.CS_Total_CP("LiNi0.5Mn0.3Co0.2O2", 8.32) * (e / 8320.0) ** -2.7 * rho * 1e-4

    def jump(e):
        j = 0.3039 * (xraylib.CS_Total(28, 8.5) - xraylib.CS_Total(28, 8.3) * (8500 / 8300) ** -2.7)
        return j * (e / 8500.0) ** -2.75 * rho * 1e-4

    def mu_of(e, w):
        return bg(e) + jump(e) * _shape(e, w)

    rng = np.random.default_rng(21)
    theta = np.linspace(0, 180, N_ANG, endpoint=False)
    _write(d / "scan.h5", SCAN_EV, theta, mu_of, rng)
    e = np.concatenate(
        [np.arange(8200, 8330, 5.0), np.arange(8330, 8380, 0.5), np.arange(8380, 8900, 5.0)]
    )
    rows = ["lithiation,path"]
    for w in (0.0, 0.17, 0.33, 0.5, 0.67, 0.83, 1.0):
        name = f"spectra/soc_{w:.2f}.txt"
        (d / "spectra").mkdir(exist_ok=True)
        absorb = 3 * mu_of(e, w) + 0.1 + 2e-4 * rng.standard_normal(e.size)
        (d / name).write_text(
            "# operando standard\nEnergy(eV)  Absorbance\n"
            + "\n".join(f"{a:.2f}  {b:.6f}" for a, b in zip(e, absorb))
            + "\n"
        )
        rows.append(f"{w},{name}")
    (d / "series.csv").write_text("\n".join(rows) + "\n")
    return d


def test_calibration_series_retrieves_a_nonlinear_chemistry(series_files, tmp_path):
    """Spheres of a chemistry that is not a mixture of its end members: the two end members
    are off by several hundredths, the measured path within 0.02."""
    d = series_files
    base = ["process", str(d / "scan.h5")]
    out = tmp_path / "path.h5"
    assert main([*base, "--calibration-series", str(d / "series.csv"), "-o", str(out)]) == 0
    path_means = _sphere_means(out)
    lines = (d / "series.csv").read_text().splitlines()
    ends = tmp_path / "ends.h5"
    lith, delith = (d / lines[-1].split(",")[1]), (d / lines[1].split(",")[1])
    args = [*base, "--lithiated", str(lith), "--delithiated", str(delith), "-o", str(ends)]
    assert main(args) == 0
    end_means = _sphere_means(ends)
    assert np.max(np.abs(end_means - W_TRUE)) > 0.04
    np.testing.assert_allclose(path_means, W_TRUE, atol=0.02)
    both = tmp_path / "both.h5"  # references given too: the series' ends are used, and said
    series = ["--calibration-series", str(d / "series.csv")]
    assert main([*args[:-2], *series, "-o", str(both)]) == 0
    from xtwin.io.limap import read_limap

    assert any("were not used" in n for n in read_limap(both).provenance["notes"])
    np.testing.assert_array_equal(_sphere_means(both), path_means)


def test_calibration_series_bad_inputs(series_files, tmp_path, capsys):
    d = series_files
    lines = (d / "series.csv").read_text().splitlines()
    cases = {
        "two rows": ("\n".join(lines[:3]), "three or more"),
        "duplicate": ("\n".join(lines + [lines[2].replace("0.17", "0.17")]), "appears twice"),
        "header": ("\n".join(["w,file"] + lines[1:]), "lithiation,path"),
        "missing": ("\n".join(lines + ["0.9,spectra/none.txt"]), "none.txt"),
    }
    for name, (text, words) in cases.items():
        csv = d / f"bad_{name.replace(' ', '_')}.csv"
        csv.write_text(text + "\n")
        out = tmp_path / "out.h5"
        rc = main(["process", str(d / "scan.h5"), "--calibration-series", str(csv), "-o", str(out)])
        err = capsys.readouterr().err
        assert rc == 2, name
        assert words in err and "Traceback" not in err, (name, err)
        assert not out.exists()
    narrow = d / "spectra" / "narrow.txt"
    narrow.write_text(
        "Energy(eV)  Absorbance\n" + "\n".join(f"{e} {e - 8300}" for e in range(8300, 8360))
    )
    csv = d / "bad_range.csv"
    csv.write_text("\n".join(lines + ["0.9,spectra/narrow.txt"]) + "\n")
    rc = main(
        [
            "process",
            str(d / "scan.h5"),
            "--calibration-series",
            str(csv),
            "-o",
            str(tmp_path / "o.h5"),
        ]
    )
    assert rc == 2
    assert "measure" in capsys.readouterr().err


# -- magnification with a contrast change across the edge ------------------------------------

MAG_EV = (8300.0, 8345.0, 8420.0)
#: The pixel-proportional-to-E law of a zone-plate microscope, about 8345 eV.
MAG_K = 1.2e-4


def _core_shell(theta, energy, scale, rng):
    """Spheres with a lithiated core (w 0.9) in a delithiated shell (w 0.15): at the edge
    energy the particles' outline looks different from the pre- and post-edge ones. Each
    energy's image is scaled about the detector centre by ``scale`` in the geometry."""
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    u_det = ((np.arange(N_COL) - (N_COL - 1) / 2)[:, None] + sub).ravel() * PIXEL_UM
    v_det = (np.arange(N_ROW)[:, None] + sub + 0.5).ravel() * PIXEL_UM
    v_c = N_ROW / 2 * PIXEL_UM
    u, v = u_det / scale, v_c + (v_det - v_c) / scale
    mu_core, mu_shell = mu_nmc_per_um(energy, 0.9), mu_nmc_per_um(energy, 0.15)
    out = np.empty((len(theta), N_ROW, N_COL))
    for k, th in enumerate(np.radians(theta)):
        line = np.zeros((v.size, u.size))
        for (z0, x0, y0), r in SPHERES:
            z0, x0, y0, r = (a * PIXEL_UM for a in (z0, x0, y0, r))
            u0 = x0 * np.cos(th) + y0 * np.sin(th)
            d2 = (u[None, :] - u0) ** 2 + (v[:, None] - z0) ** 2
            outer = 2 * np.sqrt(np.clip(r**2 - d2, 0, None))
            inner = 2 * np.sqrt(np.clip((0.6 * r) ** 2 - d2, 0, None))
            line += outer * mu_shell + inner * (mu_core - mu_shell)
        out[k] = np.exp(-line).reshape(N_ROW, 4, N_COL, 4).mean(axis=(1, 3))
    return rng.poisson(50000.0 * out).astype(np.uint16)


def _core_shell_scan(path, k_per_eV: float) -> None:
    rng = np.random.default_rng(8)
    theta = np.linspace(0, 180, N_ANG, endpoint=False)
    data = [_core_shell(theta, e, 1 + k_per_eV * (e - MAG_EV[1]), rng) for e in MAG_EV]
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.stack(data)
        f["/exchange/data_white"] = rng.poisson(50000.0, (3, 6, N_ROW, N_COL)).astype(np.uint16)
        f["/exchange/theta"] = theta
        f["/measurement/instrument/monochromator/energy"] = list(MAG_EV)
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = PIXEL_UM * 1e-6


def test_magnification_with_contrast_change_corrected(refs, tmp_path, capsys):
    """The zone-plate law (1.2e-4 per eV) on core-shell particles, whose outline changes at
    the edge energy: fitted on the pre- and post-edge images only, applied with the default
    options, and the particles' means as without magnification."""
    from xtwin.io.limap import read_limap

    means = {}
    for name, k in (("clean", 0.0), ("magnified", MAG_K)):
        scan = tmp_path / f"{name}.h5"
        _core_shell_scan(scan, k)
        out = tmp_path / f"{name}_li.h5"
        args = ["process", str(scan), "--lithiated", str(refs["lith"])]
        assert main([*args, "--delithiated", str(refs["delith"]), "-o", str(out)]) == 0
        means[name] = _sphere_means(out)
        if k:
            mag = read_limap(out).provenance["energy_magnification"]
            assert mag["applied"] and mag["fitted_on_eV"] == [8300.0, 8420.0]
            assert mag["k_per_eV"] == pytest.approx(MAG_K, rel=0.15)
            assert "magnification with energy corrected" in capsys.readouterr().err
    np.testing.assert_allclose(means["magnified"], means["clean"], atol=0.01)


def test_energy_offset_fitted_on_a_stack_itself(refs, tmp_path):
    """A 7-energy scan 0.3 eV off the standards: ``--energy-calibration scan`` fits the offset
    on its own projections (one offset for every pixel), and the spheres follow."""
    from xtwin.io.limap import read_limap

    stack = (8320.0, 8335.0, 8343.0, 8347.0, 8352.0, 8360.0, 8400.0)
    rng = np.random.default_rng(5)
    theta = np.linspace(0, 180, N_ANG, endpoint=False)
    _write(tmp_path / "scan.h5", stack, theta, lambda e, w: mu_nmc_per_um(e + 0.3, w), rng)
    out = tmp_path / "li.h5"
    assert _process(tmp_path, refs, out, "--energy-calibration", "scan") == 0
    lm = read_limap(out)
    rec = lm.provenance["energy_offset_eV"]
    assert rec["method"] == "scan" and rec["value"] == pytest.approx(0.3, abs=0.05)
    raw = tmp_path / "raw.h5"
    assert _process(tmp_path, refs, raw) == 0
    means, raw_means = _sphere_means(out), _sphere_means(raw)
    assert np.max(np.abs(raw_means - W_TRUE)) > 0.05
    np.testing.assert_allclose(means, W_TRUE, atol=0.02)


def test_quick_xanes_as_one_file_per_energy(offset_files, refs, tmp_path):
    """The quick XANES as a folder of one file per energy (or a pattern): the same offset."""
    from xtwin.io.limap import read_limap

    d, delta = offset_files
    folder = tmp_path / "quick"
    folder.mkdir()
    with h5py.File(d / "quick.h5") as src:
        data, white = src["/exchange/data"][...], src["/exchange/data_white"][...]
        theta = src["/exchange/theta"][...]
    for i, e in enumerate(QUICK_EV):
        with h5py.File(folder / f"E{e:.1f}.h5", "w") as f:
            f["/exchange/data"] = data[i]
            f["/exchange/data_white"] = white[i]
            f["/exchange/theta"] = theta
            f["/measurement/instrument/monochromator/energy"] = e
            f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
            f["/measurement/instrument/detector/pixel_size"] = PIXEL_UM * 1e-6
    for k, what in enumerate((str(folder), str(folder / "E*.h5"))):
        out = tmp_path / f"li{k}.h5"
        assert _process(d, refs, out, "--energy-calibration", what) == 0
        rec = read_limap(out).provenance["energy_offset_eV"]
        assert rec["value"] == pytest.approx(delta, abs=0.05)
        assert rec["method"] == f"quick-xanes {len(QUICK_EV)} files"


def test_magnification_modes_on_a_registration_sample():
    """The four modes on a sample whose post-edge image is magnified by the law: ``fit`` and
    ``auto`` find k from the lithiation-blind pair, ``inverse-energy`` applies 1 / E_ref
    without looking, ``off`` nothing; a negligible scale is refused and the terminal is told
    only when something was seen."""
    from scipy import ndimage

    from xtwin.pipeline._estimate.registration import register_energies
    from xtwin.prep.register import warp_image

    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random((4, 96, 128)), 2.0).astype(np.float32)
    energy = np.array([8300.0, 8345.0, 8420.0])
    k_true = 2.5e-4

    def sample(k: float) -> np.ndarray:
        # what the detector shows at E is the object scaled by s(E) about the centre: the
        # warp samples the reference image at c + (r - c) / s
        out = np.empty((3,) + base.shape, np.float32)
        for e, en in enumerate(energy):
            s = 1 + k * (en - energy[2])
            out[e] = np.stack([warp_image(b, 1 / s, 0.0, 0.0) for b in base])
        return out * np.array([0.6, 1.0, 1.2], np.float32)[:, None, None, None]

    contrast = np.array([0.0, 0.6, 0.02])  # the edge energy is not lithiation-blind
    fit = register_energies(sample(k_true), energy, "fit", contrast)
    assert fit.magnification["fitted_on_eV"] == [8300.0, 8420.0]
    assert fit.magnification["k_per_eV"] == pytest.approx(k_true, rel=0.15)
    auto = register_energies(sample(k_true), energy, "auto", contrast)
    assert auto.magnification["applied"] and auto.notices()
    law = register_energies(sample(k_true), energy, "inverse-energy", contrast)
    np.testing.assert_allclose(law.scales, energy / 8420.0)
    off = register_energies(sample(k_true), energy, "off", contrast)
    np.testing.assert_array_equal(off.scales, 1.0)
    none = register_energies(sample(0.0), energy, "auto", contrast)
    assert not none.magnification["applied"] and "refused" in none.magnification
    assert none.notices() == []  # nothing seen, nothing said
