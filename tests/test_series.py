"""Operando series: registration across time points, particles followed, rates; on sphere
phantoms written here (not by the twin): known per-particle rates, the sample moving between
time points (shift and rotation about the rotation axis), Gaussian noise on w."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from xtwin.cli import main
from xtwin.io.limap import LiMap, write_limap

SHAPE = (40, 96, 96)
PIXEL_M = 0.2e-6
TIMES_S = (0.0, 1800.0, 3600.0, 5400.0)


def _spheres(rng, n=18, radii=(4.5, 7.0), clustered=False):
    """Non-overlapping spheres well inside the field: centres (z, y, x), radii (px), start w
    and rate (per hour); ``clustered``: the rate set by the position (fast at low x), not
    drawn."""
    out = []
    tries = 0
    while len(out) < n and tries < 100000:
        tries += 1
        r = rng.uniform(*radii)
        c = np.array([rng.uniform(r + 2, SHAPE[0] - r - 2), *rng.uniform(22, 74, 2)])
        if all(np.linalg.norm(c - o[0]) > r + o[1] + 1.5 for o in out):
            rate = 0.12 - 0.10 * (c[2] - 22) / 52 if clustered else rng.uniform(0.02, 0.12)
            out.append((c, r, rng.uniform(0.55, 0.85), rate))
    return out


def _write_series(d, *, moving: bool, seed: int = 4, shrinking=False, **kw):
    rng = np.random.default_rng(seed)
    balls = _spheres(rng, **kw)
    zz, yy, xx = np.indices(SHAPE).astype(float)
    centre = np.array([(SHAPE[1] - 1) / 2, (SHAPE[2] - 1) / 2])
    paths, truth = [], []
    for k, t in enumerate(TIMES_S):
        ang = np.radians(0.5 * k) if moving else 0.0
        shift = np.array([0.0, 1.0 * k, 3.0 * k]) if moving else np.zeros(3)
        w = np.full(SHAPE, np.nan, np.float32)
        ids = np.zeros(SHAPE, np.int32)
        for i, (c, r, w0, rate) in enumerate(balls, start=1):
            yx = c[1:] - centre
            rot = np.array(
                [
                    np.cos(ang) * yx[0] - np.sin(ang) * yx[1],
                    np.sin(ang) * yx[0] + np.cos(ang) * yx[1],
                ]
            )
            cz, cy, cx = c[0] + shift[0], *(rot + centre + shift[1:])
            d2 = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2
            inside = d2 <= r * r
            dw = rate * t / 3600.0
            if shrinking:  # the surface leads: the shell loses Li first, the core later
                rel = np.sqrt(d2[inside]) / r
                w[inside] = w0 - dw * 2.0 * rel**2
            else:
                w[inside] = w0 - dw
            ids[inside] = i
        mask = np.isfinite(w)
        noisy = np.where(mask, w + rng.normal(0, 0.05, SHAPE), np.nan).astype(np.float32)
        jump = np.where(mask, 2.0e5, 0.0).astype(np.float32) + rng.normal(0, 5e3, SHAPE).astype(
            np.float32
        )
        lm = LiMap(
            lithiation=noisy,
            sigma=np.where(mask, 0.05, np.nan).astype(np.float32),
            mask=mask,
            edge_jump_per_m=jump,
            mu_per_m=np.zeros((3,) + SHAPE, np.float32),
            mu_sigma_per_m=np.zeros((3,) + SHAPE, np.float32),
            energy_eV=np.array([8320.0, 8347.0, 8400.0]),
            pixel_size_m=PIXEL_M,
            provenance={"input_metadata": {"time_s": t}},
        )
        p = d / f"op_t{k:03d}.h5"
        write_limap(p, lm)
        paths.append(str(p))
        truth.append(ids)
    return paths, balls


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    d = tmp_path_factory.mktemp("moving")
    paths, balls = _write_series(d, moving=True)
    out = d / "analysis"
    assert main(["analyze", *paths, "-o", str(out)]) == 0
    return out, balls


def test_registration_recovers_the_motion(moving):
    out, _ = moving
    reg = _read(out / "registration.csv")
    for k, row in enumerate(reg):
        # the sample turned by 0.5 degrees and moved by (0, 1, 3) px between time points
        assert float(row["rotation_deg"]) == pytest.approx(0.5 * k, abs=0.15)
        assert float(row["dx_px"]) == pytest.approx(3.0 * k, abs=0.5)
        assert float(row["dy_px"]) == pytest.approx(1.0 * k, abs=0.5)
        assert float(row["dz_px"]) == pytest.approx(0.0, abs=0.5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sample_moved"] == [True, True, True]


def test_particles_followed_and_rates(moving):
    from scipy.stats import spearmanr

    out, balls = moving
    summary = json.loads((out / "summary.json").read_text())
    # every sphere (all larger than 1.5 um) followed through every time point
    assert summary["particles_first"] == len(balls)
    assert summary["particles_followed_through_all"] >= 0.95 * len(balls)
    rates = _read(out / "rates.csv")
    rows = _read(out / "particles_time.csv")
    assert {"particle", "time_s", "w", "w_sigma", "z_um", "y_um", "x_um"} <= set(rows[0])
    # match each particle to its sphere by its centroid in the first frame
    by_id = {r["particle"]: r for r in rows if float(r["time_s"]) == 0.0}
    true_rate, found = [], []
    for r in rates:
        p = by_id[r["particle"]]
        c = np.array([float(p["z_um"]), float(p["y_um"]), float(p["x_um"])]) / (PIXEL_M * 1e6)
        sphere = min(balls, key=lambda b: np.linalg.norm(b[0] - c))
        true_rate.append(-sphere[3])  # dw/dt per hour
        found.append(float(r["rate_per_h"]))
        assert float(r["rate_sigma_per_h"]) < 0.01
    rho = spearmanr(true_rate, found).statistic
    assert rho >= 0.9
    assert np.median(np.abs(np.array(found) - true_rate)) < 0.01
    assert (out / "w_of_t.png").stat().st_size > 10_000


def test_still_sample_reports_no_motion(tmp_path):
    paths, _ = _write_series(tmp_path, moving=False)
    out = tmp_path / "analysis"
    assert main(["analyze", *paths, "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sample_moved"] == [False, False, False]
    for row in _read(out / "registration.csv"):  # within two of its own sigmas
        for key in ("dz_px", "dy_px", "dx_px", "rotation_deg"):
            sigma = float(row[key.replace("_px", "_sigma_px").replace("_deg", "_sigma_deg")])
            assert abs(float(row[key])) <= 2 * sigma + 1e-9, (key, row)


def test_bad_series_exit_2(tmp_path, capsys):
    paths, _ = _write_series(tmp_path, moving=False)
    out = str(tmp_path / "a")
    assert main(["analyze", *paths[:2], "-o", out, "--times-s", "600,0"]) == 2
    assert "do not increase" in capsys.readouterr().err
    assert main(["analyze", *paths[:2], "-o", out, "--times-s", "0"]) == 2
    assert "2 maps" in capsys.readouterr().err
    # a map of another pixel size
    from xtwin.io.limap import read_limap

    lm = read_limap(paths[1])
    import dataclasses

    write_limap(tmp_path / "other.h5", dataclasses.replace(lm, pixel_size_m=0.3e-6))
    assert main(["analyze", paths[0], str(tmp_path / "other.h5"), "-o", out]) == 2
    err = capsys.readouterr().err
    assert "pixel size" in err and "Traceback" not in err


def test_times_from_start_dates(tmp_path):
    """Maps whose scans record only an ISO 8601 start date (Data Exchange's
    /process/acquisition/start_date) get their times from it."""
    import dataclasses

    from xtwin.analysis.series import load_series
    from xtwin.io.limap import read_limap

    paths, _ = _write_series(tmp_path, moving=False)
    dated = []
    for k, p in enumerate(paths[:3]):
        lm = read_limap(p)
        start = f"2026-03-0{k + 1}T10:00:00+00:00"
        q = tmp_path / f"dated_{k}.h5"
        write_limap(
            q, dataclasses.replace(lm, provenance={"input_metadata": {"start_date": start}})
        )
        dated.append(str(q))
    pts = load_series(dated)
    assert [p.time_s for p in pts] == [0.0, 86400.0, 172800.0]


def test_shrinking_core_and_solid_solution_told_apart(tmp_path):
    from xtwin.analysis.series import analyze_series, load_series

    found = {}
    for shrinking in (False, True):
        d = tmp_path / ("shrinking" if shrinking else "solid")
        d.mkdir()
        paths, _ = _write_series(d, moving=True, shrinking=shrinking, seed=6)
        found[shrinking] = analyze_series(load_series(paths)).summary["mechanism"]
    assert found[False].startswith("solid solution")
    assert found[True].startswith("shrinking core")


def test_clustered_activity_is_found_and_random_is_not(tmp_path):
    from xtwin.analysis.series import analyze_series, load_series

    p_values = {}
    for clustered in (False, True):
        d = tmp_path / ("clustered" if clustered else "random")
        d.mkdir()
        paths, _ = _write_series(
            d, moving=False, seed=11, n=30, radii=(3.5, 5.0), clustered=clustered
        )
        p_values[clustered] = analyze_series(load_series(paths)).summary["clustering_p_value"]
    assert p_values[True] < 0.05
    assert p_values[False] > 0.05


def test_series_report_renders_in_a_browser(moving, tmp_path):
    import os

    from tests.test_analysis import _chromium, rendered_dom

    out, _ = moving
    maps = sorted(str(p) for p in out.parent.glob("op_t*.h5"))
    rep = tmp_path / "rep"
    assert main(["report", *maps, "-o", str(rep)]) == 0
    page = rep / "report.html"
    text = page.read_text()
    assert "operando series of 4 time points" in text and text.count("<table>") == 2
    assert text.count("data:image/png;base64,") == 2 and "<script" not in text
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (.ci/run installs it from the Debian packages)")
        pytest.skip("no chromium on this machine")
    dom = rendered_dom(browser, text, tmp_path)
    assert 'data-images="2:2"' in dom and "<table>" in dom
