"""Real TXM frames (SSRL 6-2c, NCA, Xradia .xrm) through the converter and the pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xtwin.cli import main


@pytest.fixture(scope="module")
def xrm_files(shared_data):
    files = sorted((shared_data / "txm" / "ssrl_6-2c_nca").glob("*.xrm"))
    if len(files) < 10:
        pytest.skip("the SSRL .xrm frames are not all there")
    return files


def test_read_real_xrm_metadata(xrm_files):
    from xtwin.io.xradia import read_xrm

    ref = read_xrm(xrm_files[0])
    assert ref.is_reference and ref.images.shape == (1, 1024, 1024)
    assert ref.images.dtype == np.uint16
    assert ref.pixel_size_m == pytest.approx(31.2e-9, rel=1e-3)
    assert ref.energy_eV[0] == 8324.0  # 0 in the file, taken from the name (and said)
    assert any("from its name" in n for n in ref.notes)
    assert ref.exposure_s[0] == pytest.approx(0.3)


def test_convert_real_frames_and_noise_model(xrm_files, tmp_path, capsys):
    from xtwin.io.source import read_scan
    from xtwin.io.xradia import xrm_to_scan
    from xtwin.prep import normalize_scan

    out = tmp_path / "nca.h5"
    assert main(["convert", *map(str, xrm_files), "-o", str(out)]) == 0
    scan = read_scan(out)
    np.testing.assert_array_equal(scan.energy_eV, [8324.0, 8354.0])
    assert scan.shape == (2, 1, 1024, 1024) and not scan.is_tomography
    np.testing.assert_allclose(scan.exposure_s, [1.5, 1.5])  # three 0.5 s repeats summed
    np.testing.assert_allclose(scan.flat_exposure_s, [0.3, 0.3], rtol=1e-6)
    assert 0.1 < scan.counts_per_photon < 1.0  # measured from the repeats
    ab = normalize_scan(scan)
    jump = ab.absorbance[1, 0] - ab.absorbance[0, 0]
    sigma = np.sqrt(ab.variance[0, 0] + ab.variance[1, 0])
    # Ni in the NCA particles: a significant edge jump over a fifth of the field
    assert np.mean(jump > 3 * sigma) > 0.1
    # the noise model predicts the scatter between two independent repeats
    refs = [f for f in xrm_files if "_ref_" in f.name]
    reps = [f for f in xrm_files if "_ref_" not in f.name and "08324" in f.name]
    a = normalize_scan(xrm_to_scan([reps[0], *refs[:2]]))
    b = normalize_scan(xrm_to_scan([reps[1], *refs[:2]]))
    diff = (a.absorbance - b.absorbance)[0, 0]
    gain = scan.counts_per_photon
    counts = xrm_to_scan([reps[0], *refs[:2]]).data[0, 0].astype(float)
    bright = counts > 300
    predicted = np.median(2 * gain / counts[bright])  # data terms; the shared flats cancel
    empirical = (1.4826 * np.median(np.abs(diff[bright] - np.median(diff[bright])))) ** 2
    # within 35 %: this CCD is not an ideal Poisson x gain detector (the repeat-to-repeat
    # ratio var/(a+b) ranges 0.18-0.41 over intensity and energy); with the gain assumed 1
    # the prediction would be 3-4x too large, and without the exposure scaling of the flats
    # the optical density would be off by ln(5)
    assert empirical == pytest.approx(predicted, rel=0.35)
    # exposure-scaled flats give OD about 1.1 (T 0.34); unscaled flats would give 0.6
    assert 0.9 < np.median(a.absorbance) < 1.3


def test_process_two_energies_gives_edge_jump(xrm_files, tmp_path, capsys, shared_data):
    out = tmp_path / "nca.h5"
    assert main(["convert", *map(str, xrm_files), "-o", str(out)]) == 0
    capsys.readouterr()
    ref = shared_data / "spectra" / "nca_ni_k_ssrl_txm_spectrum.csv"
    rc = main(
        [
            "process",
            str(out),
            "--lithiated",
            str(ref),
            "--delithiated",
            str(ref),
            "-o",
            str(tmp_path / "li.h5"),
        ]
    )
    assert rc == 0 and "edge-jump map" in capsys.readouterr().out


def test_info_on_xrm(xrm_files, capsys):
    assert main(["info", str(xrm_files[0])]) == 0
    assert "Xradia flat-field reference" in capsys.readouterr().out


def test_not_xradia(tmp_path, capsys):
    bad = tmp_path / "x.xrm"
    bad.write_bytes(b"not ole")
    assert main(["convert", str(bad), "-o", str(tmp_path / "o.h5")]) == 2
    assert "not an Xradia" in capsys.readouterr().err


# -- an operando-like folder: two states of charge, different exposures, ref_-named flats --


def _write_frame(template, path, image, energy_eV, exposure_s, date):
    """A copy of a real .xrm frame with its image, energy, exposure and date replaced
    (olefile rewrites streams of the same size in place)."""
    import shutil
    import struct

    import olefile

    shutil.copy(template, path)
    path.chmod(0o644)
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        ole.write_stream("ImageData1/Image1", image.astype("<u2").tobytes())
        ole.write_stream("ImageInfo/Energy", struct.pack("<f", energy_eV))
        ole.write_stream("ImageInfo/ExpTimes", struct.pack("<f", exposure_s))
        ole.write_stream("ImageInfo/Date", date.encode().ljust(40, b"\0"))


@pytest.fixture(scope="module")
def operando_folder(xrm_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("operando")
    rng = np.random.default_rng(7)
    template = [f for f in xrm_files if "_ref_" not in f.name][0]
    flux = 4000.0  # photons per pixel per second
    trans = {"charged": 0.30, "discharged": 0.55}
    frames = {}
    # references: ref_-named, 0.25 s, shared by both states (their name matches neither)
    for e in (8324.0, 8354.0):
        for k in range(2):
            img = rng.poisson(flux * 0.25, (1024, 1024))
            p = d / f"ref_NMC_{e:08.1f}_eV_{k + 1:03d}.xrm"
            _write_frame(template, p, img, 0.0, 0.25, "01/10/26 09:55:00")
    # two states, different exposures, repeats; energy stored 0 (read from the name)
    for state, t_exp, n_rep, when in (
        ("charged", 0.5, 3, "01/10/26 10:00:00"),
        ("discharged", 1.0, 2, "01/10/26 10:30:00"),
    ):
        for e in (8324.0, 8354.0):
            t = trans[state] * (0.9 if e < 8340 else 0.8)
            for k in range(n_rep):
                img = rng.poisson(flux * t_exp * t, (1024, 1024))
                p = d / f"NMC_{state}_{e:.0f}_0eV_{k + 1:03d}of{n_rep:03d}.xrm"
                _write_frame(template, p, img, 0.0, t_exp, when)
                frames.setdefault((state, e), []).append(img)
    return d, frames, trans


def test_convert_operando_folder_one_scan_per_state(operando_folder, tmp_path, capsys):
    from xtwin.io.source import read_scan
    from xtwin.prep import normalize_scan

    d, frames, trans = operando_folder
    out = tmp_path / "op.h5"
    assert main(["convert", *map(str, sorted(d.glob("*.xrm"))), "-o", str(out)]) == 0
    made = sorted(tmp_path.glob("op_t*.h5"))
    assert [p.name for p in made] == ["op_t000_NMC_charged.h5", "op_t001_NMC_discharged.h5"]
    for path, state, t_exp, n_rep, t0 in (
        (made[0], "charged", 0.5, 3, 0.0),
        (made[1], "discharged", 1.0, 2, 1800.0),
    ):
        scan = read_scan(path)
        assert scan.metadata["time_s"] == pytest.approx(t0)
        np.testing.assert_allclose(scan.exposure_s, [n_rep * t_exp] * 2)  # repeats summed
        np.testing.assert_allclose(scan.flat_exposure_s, [0.25, 0.25])
        for ie, e in enumerate((8324.0, 8354.0)):
            # exactly this state's repeats: never summed across states
            np.testing.assert_array_equal(scan.data[ie, 0], np.sum(frames[(state, e)], axis=0))
        # exposure scaling of the flats gives the true transmission
        ab = normalize_scan(scan)
        for ie, f in enumerate((0.9, 0.8)):
            assert np.median(ab.absorbance[ie, 0]) == pytest.approx(
                -np.log(trans[state] * f), abs=0.01
            )
    # the two time points are an operando series for `process`
    from xtwin.io.source import series_order

    assert series_order(made) == [0, 1]


def test_convert_splits_one_name_with_two_exposures(operando_folder, tmp_path):
    """Frames of one name at the same energy but different exposures are not repeats."""
    import shutil

    from xtwin.io.xradia import xrm_to_scans

    d, _, _ = operando_folder
    sub = tmp_path / "mixed"
    sub.mkdir()
    for p in d.glob("*.xrm"):
        name = p.name.replace("discharged", "charged")
        shutil.copy(p, sub / name)
    scans = xrm_to_scans(sorted(sub.glob("*.xrm")))
    keys = [k for k, _ in scans]
    assert keys == ["NMC_charged_0.5s", "NMC_charged_1s"]


def test_explicit_flat_and_dark_globs(operando_folder, tmp_path):
    import shutil

    from xtwin.io.xradia import xrm_to_scans

    d, _, _ = operando_folder
    sub = tmp_path / "renamed"
    sub.mkdir()
    for p in d.glob("*.xrm"):
        if "discharged" in p.name:
            continue
        shutil.copy(p, sub / p.name.replace("ref_NMC", "open_beam"))
    files = sorted(sub.glob("*.xrm"))
    with pytest.raises(Exception, match="no flat-field references"):
        xrm_to_scans(files)  # open_beam_* is not a known reference name: taken as a sample
    scans = xrm_to_scans(files, flats="open_beam*")
    assert len(scans) == 1 and scans[0][1].flats.shape[1] == 2


def test_mosaic_is_read_as_one_stitched_image(shared_data):
    from xtwin.io.xradia import read_xrm

    m = read_xrm(shared_data / "txm" / "mosaic" / "mosaic_4x4_bin8.xrm")
    assert m.images.shape == (1, 1024, 1024)
    assert m.pixel_size_m == pytest.approx(155.8e-9, rel=1e-3)
    assert any("4 x 4 mosaic" in n for n in m.notes)


# -- real tomopy files: per-image energies, angles, shifts, the embedded reference --


def test_real_txrm_tomography_metadata(shared_data, tmp_path, capsys):
    from xtwin.io.source import read_scan

    txrm = shared_data / "txm" / "tomopy" / "txrm_test_chip_tomo.txrm"
    out = tmp_path / "chip.h5"
    assert main(["convert", str(txrm), "-o", str(out)]) == 0
    scan = read_scan(out)
    # ImageInfo/Energy holds 9200 eV on the first image only: every image is at 9200 eV
    np.testing.assert_allclose(scan.energy_eV, [9200.0], atol=0.1)
    assert scan.data.shape == (1, 7, 256, 256)
    np.testing.assert_allclose(scan.theta_deg, np.arange(-45, 46, 15), atol=0.05)
    assert scan.pixel_size_m == pytest.approx(0.1558e-6, rel=1e-3)
    sh = scan.projection_shifts_px
    assert sh is not None and sh.shape == (1, 7, 2)
    assert sh[0, 0, 1] == pytest.approx(0.2592, abs=1e-3)  # X-Shifts[0], columns
    assert sh[0, 0, 0] == pytest.approx(0.2440, abs=1e-3)  # Y-Shifts[0], rows
    assert scan.flats is None  # no reference in or beside it
    with __import__("h5py").File(out, "r") as f:
        notes = f["/provenance"].attrs["notes"]
    assert "recorded for 1 of 7 images" in notes and "no flat-field references" in notes
    # processing it names what is missing
    rc = main(["process", str(out), "-o", str(tmp_path / "m.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "flat" in err or "not a tomogram" in err  # 7 angles over 90 degrees


def test_real_xrm_embedded_reference(shared_data, tmp_path):
    from xtwin.io.source import read_scan

    xrm = shared_data / "txm" / "tomopy" / "test_chip00.xrm"
    out = tmp_path / "chip00.h5"
    assert main(["convert", str(xrm), "-o", str(out)]) == 0
    scan = read_scan(out)
    assert scan.flats is not None and scan.flats.shape == (1, 1, 512, 512)
    # the reference's own exposure (40 s) beside the image's (39.88 s)
    assert scan.flat_exposure_s[0] == pytest.approx(40.0, rel=1e-4)
    assert scan.exposure_s[0] == pytest.approx(39.8847, rel=1e-4)
    t = scan.data[0, 0] / scan.flats[0, 0] * scan.flat_exposure_s[0] / scan.exposure_s[0]
    # the flat removes the illumination's structure: the raw image follows the reference
    # (correlation 0.76), the normalized one does not (-0.27); transmission within (0, 1.1]
    raw, ref = scan.data[0, 0].astype(float), scan.flats[0, 0].astype(float)
    c_raw = np.corrcoef(raw.ravel(), ref.ravel())[0, 1]
    c_norm = np.corrcoef(t.ravel(), ref.ravel())[0, 1]
    assert c_raw > 0.6 and abs(c_norm) < 0.5 * c_raw
    assert np.percentile(t, 99.9) < 1.1 and np.median(t) > 0
    with __import__("h5py").File(out, "r") as f:
        assert "embedded" in f["/provenance"].attrs["notes"]


def test_finer_binned_reference_is_summed_to_the_samples_binning():
    from xtwin.io.xradia import XrmImages, _at_binning

    rng = np.random.default_rng(1)
    fine = rng.poisson(100.0, (1, 8, 12)).astype(np.float64)
    ref = XrmImages(fine, np.array([8400.0]), np.zeros(1), np.ones(1), 1e-7, "flat", (), "r.xrm")
    ref = dataclasses.replace(ref, binning=1)
    out = _at_binning(ref, 2, (4, 6))
    assert out.images.shape == (1, 4, 6) and out.binning == 2
    assert out.images[0, 0, 0] == fine[0, :2, :2].sum()  # counts add
    assert out.images.sum() == fine.sum() and "summed 2 x 2" in out.notes[-1]
    # a coarser reference is left as it is (and refused by the size check)
    assert _at_binning(dataclasses.replace(ref, binning=4), 2, (4, 6)) is not None


def test_process_of_an_xradia_file_names_convert(shared_data, tmp_path, capsys):
    xrm = shared_data / "txm" / "tomopy" / "test_chip00.xrm"
    assert main(["process", str(xrm), "-o", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "xtwin convert" in err and "Traceback" not in err


def test_info_of_an_edge_jump_map_says_what_it_has(xrm_files, tmp_path, capsys):
    """Two energies: info describes the edge jump, without a NaN lithiation or a warning."""
    import warnings

    scan, limap = tmp_path / "nca.h5", tmp_path / "edge.h5"
    assert main(["convert", *map(str, xrm_files), "-o", str(scan)]) == 0
    assert main(["process", str(scan), "-o", str(limap)]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["info", str(limap)]) == 0
    out = capsys.readouterr().out
    assert "edge-jump map" in out and "median Ni edge jump" in out and "nan" not in out
