"""CLI: exit codes, clear messages, no partial outputs; the demo end to end."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from xtwin.cli import main


def _run(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture()
def refs(demo_run):
    return [
        "--lithiated",
        str(demo_run / "reference_lithiated.csv"),
        "--delithiated",
        str(demo_run / "reference_delithiated.csv"),
    ]


def _copy_scan(demo_run, tmp_path, edit):
    src = demo_run / "scan.h5"
    dst = tmp_path / "edited.h5"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _nan_projection(f):
    data = f["/exchange/data"][()].astype(np.float32)
    data[0, 0, 0, 0] = np.nan
    del f["/exchange/data"]
    f["/exchange/data"] = data


def _wrong_shape(f):
    data = f["/exchange/data"][()]
    del f["/exchange/data"]
    f["/exchange/data"] = data[0, 0]


def _no_bracket(f):
    del f["/measurement/instrument/monochromator/energy"]
    f["/measurement/instrument/monochromator/energy"] = np.array([8300.0, 8310.0, 8320.0])
    f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"


def _wrong_theta(f):
    del f["/exchange/theta"]
    f["/exchange/theta"] = np.arange(5.0)


@pytest.mark.parametrize(
    "case, edit, match",
    [
        ("missing dataset", lambda f: f.__delitem__("/exchange/data"), "no dataset /exchange/data"),
        ("wrong shape", _wrong_shape, "dimensions"),
        ("nan projections", _nan_projection, "NaN"),
        ("not bracketing", _no_bracket, "bracket"),
        ("wrong theta", _wrong_theta, "theta"),
        (
            "no energy",
            lambda f: f.__delitem__("/measurement/instrument/monochromator/energy"),
            "energies",
        ),
    ],
)
def test_process_bad_scan_exit_2_no_output(demo_run, tmp_path, refs, capsys, case, edit, match):
    scan = _copy_scan(demo_run, tmp_path, edit)
    out = tmp_path / "out.h5"
    rc, err = _run(["process", str(scan), *refs, "-o", str(out)], capsys)
    assert rc == 2, case
    assert match in err and "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob("*.part"))


def test_process_missing_and_not_hdf5(tmp_path, refs, capsys):
    out = tmp_path / "o.h5"
    rc, err = _run(["process", str(tmp_path / "nope.h5"), *refs, "-o", str(out)], capsys)
    assert rc == 2 and "does not exist" in err
    txt = tmp_path / "scan.h5"
    txt.write_text("hello")
    rc, err = _run(["process", str(txt), *refs, "-o", str(out)], capsys)
    assert rc == 2 and "not an HDF5 file" in err
    assert not out.exists()


def test_process_bad_reference(demo_run, tmp_path, capsys):
    bad = tmp_path / "ref.csv"
    bad.write_text("energy,absorbance\n1,2\n")
    rc, err = _run(
        [
            "process",
            str(demo_run / "scan.h5"),
            "--lithiated",
            str(bad),
            "--delithiated",
            str(bad),
            "-o",
            str(tmp_path / "o.h5"),
        ],
        capsys,
    )
    assert rc == 2 and "at least 10" in err


def test_process_refuses_overwrite(demo_run, refs, capsys):
    rc, err = _run(
        ["process", str(demo_run / "scan.h5"), *refs, "-o", str(demo_run / "limap.h5")], capsys
    )
    assert rc == 2 and "--force" in err


@pytest.mark.parametrize(
    "text, match",
    [
        ("this is [not toml", "not valid TOML"),
        ("[grid]\nn_pixels = 'many'\n", "wrong type"),
        ("[grid]\nbogus = 1\n", "unknown key"),
        ("[acquisition]\nenergies_eV = [8.32, 8.347, 8.4]\n", "in eV"),
        ("[electrochemistry]\nprotocol = 'Charge at 1C'\n", "wrong type"),
        ("[electrochemistry]\nsnapshot_times_s = [1200.0, 600.0]\n", "increasing"),
        ("[electrochemistry]\nprotocol = ['Charge sideways forever']\n", "PyBaMM cannot read"),
        ("seed = -3\n", "seed"),
    ],
)
def test_simulate_malformed_scenario(tmp_path, capsys, text, match):
    sc = tmp_path / "bad.toml"
    sc.write_text(text)
    out = tmp_path / "out"
    rc, err = _run(["simulate", str(sc), "-o", str(out)], capsys)
    assert rc == 2 and match in err and "Traceback" not in err
    assert not (out / "scan.h5").exists()


def test_simulate_missing_scenario(tmp_path, capsys):
    rc, err = _run(["simulate", str(tmp_path / "none.toml"), "-o", str(tmp_path)], capsys)
    assert rc == 2 and "does not exist" in err


def test_usage_error_is_exit_2(capsys):
    rc, _ = _run(["process"], capsys)
    assert rc == 2


def test_demo_meets_accuracy(demo_run):
    m = json.loads((demo_run / "metrics.json").read_text())
    assert m["particle"]["mae"] < 0.05
    assert m["particle"]["n"] >= 10
    assert m["voxel"]["coverage"] > 0.95
    # the per-voxel uncertainty is calibrated: error / sigma has unit spread
    assert 0.8 < m["voxel"]["z_score_std"] < 1.25
    for name in ("slices.png", "error_histogram.png", "limap.h5"):
        assert (demo_run / name).stat().st_size > 0


def test_compare_returns_typed_metrics(demo_run):
    from xtwin.io.limap import read_limap
    from xtwin.io.truth import read_truth
    from xtwin.validate.metrics import Metrics, compare

    m = compare(read_limap(demo_run / "limap.h5"), read_truth(demo_run / "truth.h5"))
    assert isinstance(m, Metrics)
    assert m.particle.n == len(m.particle.table) >= 10
    assert m["voxel"]["rmse"] == m.voxel.rmse  # the mapping view is the JSON of `compare`
    assert json.loads(json.dumps(m.to_dict()))["particle"]["mae"] == m.particle.mae


def test_compare_json(demo_run, capsys):
    rc = main(["compare", str(demo_run / "limap.h5"), str(demo_run / "truth.h5"), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    m = json.loads(out)
    assert {"rmse", "bias"} <= set(m["voxel"]) and "mae" in m["particle"]


def test_info_on_each_kind(demo_run, capsys):
    for name, word in (
        ("scan.h5", "scan file"),
        ("truth.h5", "truth file"),
        ("limap.h5", "Li-map file"),
        ("reference_lithiated.csv", "spectrum"),
    ):
        assert main(["info", str(demo_run / name)]) == 0
        assert word in capsys.readouterr().out


def test_operando_series_end_to_end(tmp_path, capsys):
    """Two snapshots of a charge: simulate writes scan/truth per time point, process writes a
    Li map per time point in time order (files given in reverse), and lithiation falls."""
    sc = tmp_path / "series.toml"
    sc.write_text(
        "seed = 3\n[grid]\nn_pixels = 48\nn_rows = 12\n"
        "[acquisition]\nn_angles = 80\n"
        "[electrochemistry]\nprotocol = ['Charge at 1C for 1800 seconds']\n"
        "snapshot_times_s = [600.0, 1800.0]\n"
    )
    out = tmp_path / "sim"
    assert main(["simulate", str(sc), "-o", str(out)]) == 0
    assert (out / "scan_t001.h5").exists() and (out / "truth_t001.h5").exists()
    refs = [
        "--lithiated",
        str(out / "reference_lithiated.csv"),
        "--delithiated",
        str(out / "reference_delithiated.csv"),
    ]
    li = tmp_path / "li.h5"
    assert (
        main(
            ["process", str(out / "scan_t001.h5"), str(out / "scan_t000.h5"), *refs, "-o", str(li)]
        )
        == 0
    )
    capsys.readouterr()
    means = []
    for k in (0, 1):
        assert (
            main(
                [
                    "compare",
                    str(tmp_path / f"li_t{k:03d}.h5"),
                    str(out / f"truth_t{k:03d}.h5"),
                    "--json",
                ]
            )
            == 0
        )
        m = json.loads(capsys.readouterr().out)
        assert m["particle"]["mae"] < 0.05
        means.append(m["recovered_mean_lithiation"])
    assert means[0] > means[1] + 0.2  # 600 s vs 1800 s of 1C charge: about 0.33 apart
    # the same command again keeps the finished time points (made from the same scans)
    assert (
        main(
            ["process", str(out / "scan_t001.h5"), str(out / "scan_t000.h5"), *refs, "-o", str(li)]
        )
        == 0
    )
    assert capsys.readouterr().out.count("(kept)") == 2
    # the truth of the other time point is refused, naming the difference
    rc, err = _run(["compare", str(tmp_path / "li_t000.h5"), str(out / "truth_t001.h5")], capsys)
    assert rc == 2 and "time point" in err and "Traceback" not in err
    # two unrelated scans are not an operando series
    other = tmp_path / "other"
    sc.write_text(
        sc.read_text().replace("seed = 3", "seed = 4").replace("n_pixels = 48", "n_pixels = 40")
    )
    assert main(["simulate", str(sc), "-o", str(other)]) == 0
    rc, err = _run(
        [
            "process",
            str(out / "scan_t000.h5"),
            str(other / "scan_t001.h5"),
            *refs,
            "-o",
            str(tmp_path / "mixed.h5"),
        ],
        capsys,
    )
    assert rc == 2 and "same operando series" in err


def test_unwritable_output_refused_before_any_work(demo_run, tmp_path, refs, capsys):
    """A file where the output directory should be: exit 2 at once, nothing computed."""
    import time

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    t0 = time.perf_counter()
    rc, err = _run(
        ["process", str(demo_run / "scan.h5"), *refs, "-o", str(blocker / "out.h5")], capsys
    )
    assert rc == 2 and "cannot write" in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 5.0  # refused before the reconstruction
    from pathlib import Path

    scenario = Path(__file__).resolve().parents[1] / "synthetic" / "default.toml"
    rc, err = _run(["simulate", str(scenario), "-o", str(blocker / "sim")], capsys)
    assert rc == 2 and "cannot write" in err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_honour_the_umask(demo_run, tmp_path, refs, capsys, umask):
    import os

    old = os.umask(umask)
    try:
        out = tmp_path / f"u{umask:o}.h5"
        rc, _ = _run(
            ["process", str(demo_run / "scan.h5"), *refs, "-o", str(out), "--rows", "10:14"], capsys
        )
    finally:
        os.umask(old)
    assert rc == 0
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
