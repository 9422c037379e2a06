"""`xtwin analyze` and `xtwin report` on phantoms written here (spheres of known lithiation,
planted surface hot spots, depth trends, internal pores, Gaussian noise of known sigma), on
the demo's map and truth, and the HTML report in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from xtwin.analysis.lithiation import MapInput, analyze_map, compare_analyses
from xtwin.cli import main

SHAPE = (40, 56, 56)
SPHERES = [  # (z, y, x), radius, w
    ((10, 14, 14), 7, 0.30),
    ((12, 14, 40), 7, 0.55),
    ((28, 40, 14), 7, 0.70),
    ((28, 40, 40), 7, 0.45),
    ((20, 28, 28), 6, 0.62),
]


def phantom(seed, *, hot=False, trend=0.0, noise=0.05, cavity=False, same_w=False):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(SHAPE)
    labels = np.zeros(SHAPE, np.int32)
    w = np.full(SHAPE, np.nan)
    for k, ((z, y, x), r, wk) in enumerate(SPHERES, start=1):
        d = np.sqrt((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2)
        sel = d <= r
        labels[sel] = k
        w[sel] = (0.5 if same_w else wk) + trend * (zz[sel] - SHAPE[0] / 2)
        if hot and k == 2:  # a cap of the second sphere's surface, facing +x, is delithiated
            cap = sel & (d > r - 2.5) & (xx - x > 4)
            w[cap] -= 0.25
        if cavity and k == 4:  # an internal pore with faster lithiation around it
            hole = d <= 2.5
            labels[hole] = 0
            w[hole] = np.nan
            w[sel & (d > 2.5) & (d <= 4.5)] += 0.15
    active = labels > 0
    noisy = np.where(active, w + noise * rng.standard_normal(SHAPE), np.nan)
    sigma = np.where(active, noise, np.nan)
    return noisy, sigma, active, labels, w


def _analyze(seed, **kw):
    noisy, sigma, active, _, _ = phantom(seed, **kw)
    return analyze_map(MapInput(noisy, sigma, active, 0.4e-6))


def _truth(**kw):
    _, _, active, labels, w = phantom(0, **kw)
    return analyze_map(MapInput(w, np.zeros(SHAPE), active, 0.4e-6, labels=labels), fdr=0.0)


def test_particles_and_means():
    a = _analyze(1)
    assert len(a.particles) == len(SPHERES)
    t = _truth()
    cmp = compare_analyses(a, t)
    assert cmp["particles_matched"] == len(SPHERES)
    assert cmp["particle_rank_correlation"] == pytest.approx(1.0)
    for p in a.particles:
        true_w = min(SPHERES, key=lambda s: abs(s[2] - p["mean_w"]))[2]
        assert abs(p["mean_w"] - true_w) < 4 * p["sigma_mean_w"] + 0.01
        assert p["sigma_mean_w"] == pytest.approx(0.05 / np.sqrt(p["n_voxels"]), rel=1e-6)


def test_planted_hot_spot_found_and_none_invented():
    t = _truth(hot=True)
    assert len(t.hot_spots) >= 1
    for seed in (2, 3, 4):
        a = _analyze(seed, hot=True)
        cmp = compare_analyses(a, t)
        assert cmp["hot_spot_recall"] == 1.0
        assert cmp["hot_spot_precision"] == 1.0
        assert a.summary["surface_hot_spots"] >= 1
        assert all(h["mean_deviation"] < 0 for h in a.hot_spots)  # delithiated
    # no hot spot in the truth: none reported over several noise draws (FDR control)
    assert sum(len(_analyze(seed).hot_spots) for seed in (5, 6, 7)) == 0


def test_depth_trend_is_detected_only_when_present():
    flat = _analyze(8, same_w=True)
    assert flat.summary["uniform_across_depth"]
    tilted = _analyze(8, trend=0.01, same_w=True)  # +0.01 per voxel = +0.25 per 10 um
    assert not tilted.summary["uniform_across_depth"]
    assert tilted.summary["depth_trend_per_10um"] == pytest.approx(0.25, abs=0.08)


def test_internal_pore_profile():
    a = _analyze(9, cavity=True)
    assert a.internal["mean"].size and np.isfinite(a.internal["mean"][:2]).any()
    assert a.summary["internal_pore_near_minus_far"] > 0.05


def test_analyze_cli_on_demo_map_and_truth(demo_run, tmp_path):
    rec, tru = tmp_path / "rec", tmp_path / "tru"
    assert main(["analyze", str(demo_run / "limap.h5"), "-o", str(rec)]) == 0
    assert main(["analyze", str(demo_run / "truth.h5"), "-o", str(tru)]) == 0
    for d in (rec, tru):
        for name in (
            "particles.csv",
            "depth_profile.csv",
            "hot_spots.csv",
            "labels.h5",
            "summary.txt",
            "slices.png",
            "profiles.png",
            "particles.png",
        ):
            assert (d / name).stat().st_size > 0
    s_rec = json.loads((rec / "summary.json").read_text())
    s_tru = json.loads((tru / "summary.json").read_text())
    assert s_rec["kind"] == "limap" and s_tru["kind"] == "truth"
    assert np.sign(s_rec["surface_minus_core_mean"]) == np.sign(s_tru["surface_minus_core_mean"])
    assert abs(s_rec["n_particles"] - s_tru["n_particles"]) <= 3


def test_analyze_refuses_edge_jump_maps(tmp_path, capsys):
    from tests.test_modes import write_xanes

    scan = write_xanes(tmp_path / "two.h5", [8320.0, 8400.0], 1e5, 1)
    out = tmp_path / "two_map.h5"
    assert main(["process", str(scan), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["analyze", str(out), "-o", str(tmp_path / "an")]) == 2
    assert "edge-jump" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def rendered_dom(browser: str, html_text: str, tmp_path) -> str:
    """The DOM of a page after Chromium loaded it, with ``data-images="N:M"`` on the body:
    N images, M of them decoded."""
    probe = tmp_path / "probe.html"
    probe.write_text(
        html_text.replace(
            "</body>",
            "<script>window.addEventListener('load',()=>{const i=[...document.images];"
            "document.body.setAttribute('data-images',i.length+':'+"
            "i.filter(x=>x.complete&&x.naturalWidth>0).length);});</script></body>",
        )
    )
    return subprocess.run(
        [browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def test_report_html_in_headless_chromium(demo_run, tmp_path):
    """The report opens in a real browser with every figure decoded, and renders."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (.ci/run installs it from the Debian packages)")
        pytest.skip("no chromium on this machine")
    out = tmp_path / "report"
    assert (
        main(["report", str(demo_run / "limap.h5"), str(demo_run / "truth.h5"), "-o", str(out)])
        == 0
    )
    page = out / "report.html"
    text = page.read_text()
    assert "data:image/png;base64," in text and "<script" not in text  # self-contained, static
    dom = rendered_dom(browser, text, tmp_path)
    n_img = text.count("<img ")
    assert n_img >= 5
    assert f'data-images="{n_img}:{n_img}"' in dom
    # numbers as a table the browser lays out (not a JSON dump), and one particle count: the
    # summary and the comparison both use the truth's 30 particles; the map's own
    # segmentation (29: one small particle merged into a neighbour) is said beside it
    assert "<table>" in dom and '"voxel"' not in text
    import json as _json

    n_truth = _json.loads((demo_run / "metrics.json").read_text())["particle"]["n"]
    assert f"{n_truth} particles (the truth" in text
    assert f"<td>particles compared (the truth&#x27;s labels)</td><td>{n_truth}</td>" in text
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            "--window-size=1200,3000",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    # the page is not blank: coloured figure pixels (viridis) cover part of it
    colourful = (img.max(axis=-1) - img.min(axis=-1)) > 0.25
    assert colourful.mean() > 0.02
