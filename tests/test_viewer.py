"""The napari plugin, with napari's own fixture (``make_napari_viewer``) on a real (virtual)
screen: reader layers (names, scales in um, contrast limits, labels), a screenshot of the
canvas that shows the map, and the particles widget against ``xtwin analyze``.

Needs the viewer extra and a display: CI runs it under Xvfb (``.ci/viewer``) with
XTWIN_REQUIRE_VIEWER=1, which turns the skips below into failures.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

if os.environ.get("XTWIN_REQUIRE_VIEWER"):
    import napari  # noqa: F401  (must be there)
else:
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    if not os.environ.get("DISPLAY"):
        pytest.skip("no display (run under xvfb-run)", allow_module_level=True)

from xtwin.cli import main  # noqa: E402
from xtwin.viewer._reader import get_reader, read_layers  # noqa: E402


def _by_name(layers, suffix):
    return next(ly for ly in layers if ly.name.endswith(suffix))


def test_reader_layers_are_lazy_with_physical_scale(demo_run):
    import dask.array as da

    path = str(demo_run / "limap.h5")
    assert get_reader(path) is not None
    assert get_reader(str(demo_run / "reference_lithiated.csv")) is None
    layers = {
        kw["name"].split(": ", 1)[1]: (data, kw, kind) for data, kw, kind in read_layers(path)
    }
    data, kw, kind = layers["lithiation w"]
    assert kind == "image" and isinstance(data, da.Array)
    assert kw["contrast_limits"] == (0.0, 1.0) and kw["colormap"] == "viridis"
    np.testing.assert_allclose(kw["scale"], (0.4, 0.4, 0.4))  # the demo's 400 nm pixels
    assert kw["units"] == ("um", "um", "um")
    assert layers["Ni mask"][2] == "labels"
    mu = layers["mu (1/m)"][0]
    assert mu.shape[0] == 3 and layers["mu (1/m)"][1]["axis_labels"][0] == "energy"


def test_viewer_shows_the_map_and_truth(make_napari_viewer, demo_run):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(demo_run / "limap.h5"), plugin="xtwin")
    viewer.open(str(demo_run / "truth.h5"), plugin="xtwin")
    names = [ly.name for ly in viewer.layers]
    assert "limap: lithiation w" in names and "truth: true w" in names
    w = _by_name(viewer.layers, "limap: lithiation w")
    assert tuple(w.contrast_limits) == (0.0, 1.0)
    np.testing.assert_allclose(w.scale, (0.4, 0.4, 0.4))
    assert _by_name(viewer.layers, "true particles").__class__.__name__ == "Labels"
    for ly in viewer.layers:
        ly.visible = ly is w
    z = w.data.shape[0] // 2
    viewer.dims.set_point(viewer.dims.ndim - 3, z * 0.4)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float) / 255
    # not blank, and the colormap's colours are there: viridis runs from purple (w=0) to
    # yellow (w=1); the demo's w of about 0.65 is green-teal
    assert shot.std() > 0.05
    colourful = (shot.max(axis=-1) - shot.min(axis=-1)) > 0.25
    assert colourful.mean() > 0.05
    greenish = (shot[..., 1] > shot[..., 0] + 0.1) & (shot[..., 1] > 0.4)
    assert greenish.mean() > 0.02


def test_particle_widget_matches_analyze(make_napari_viewer, demo_run, tmp_path):
    from xtwin.viewer._widget import ParticleWidget

    viewer = make_napari_viewer(show=True)
    viewer.open(str(demo_run / "limap.h5"), plugin="xtwin")
    viewer.open(str(demo_run / "truth.h5"), plugin="xtwin")
    widget = ParticleWidget(viewer)
    widget.analyze()
    assert main(["analyze", str(demo_run / "limap.h5"), "-o", str(tmp_path / "an")]) == 0
    with open(tmp_path / "an" / "particles.csv") as fh:
        ref = {int(r["id"]): r for r in csv.DictReader(fh)}
    rows = {int(r["id"]): r for r in widget.table_rows()}
    assert rows.keys() == ref.keys() and len(rows) >= 20
    for pid, r in rows.items():
        for key in ("mean_w", "sigma_mean_w", "diameter_um", "depth_um", "n_voxels"):
            assert r[key] == pytest.approx(float(ref[pid][key]), rel=1e-4, abs=1e-6), (pid, key)
    # sorting by w orders the rows; the export writes what is shown
    widget.table.sortItems(1)
    ws = [r["mean_w"] for r in widget.table_rows()]
    assert ws == sorted(ws)
    out = widget.export_csv(tmp_path / "exported.csv")
    with open(out) as fh:
        exported = list(csv.DictReader(fh))
    assert [float(r["mean_w"]) for r in exported] == pytest.approx(ws, abs=1e-4)
    # a click (the labels layer's value at a point) selects the particle and says its numbers
    labels = _by_name(viewer.layers, "limap: particles")
    pid = int(np.bincount(labels.data.ravel())[1:].argmax() + 1)
    z, y, x = (int(np.median(c)) for c in np.nonzero(labels.data == pid))
    if labels.data[z, y, x] != pid:
        z, y, x = (int(c[0]) for c in np.nonzero(labels.data == pid))
    lead = viewer.dims.ndim - 3  # mu's energy axis comes first in the viewer's world
    viewer.dims.set_point(lead, z * 0.4)  # the slice shown: a click lands in it
    where = tuple(viewer.dims.point[:lead]) + (z * 0.4, y * 0.4, x * 0.4)
    assert int(labels.get_value(where, world=True)) == pid
    widget.select(pid)
    assert widget.selected_ids() == [pid]
    assert f"particle {pid}: w = {ref[pid]['mean_w'][:5]}" in widget.info.text()
    # the error map against the truth
    widget.add_error_map()
    err = _by_name(viewer.layers, "error (recovered - true w)")
    rec = np.asarray(_by_name(viewer.layers, "limap: lithiation w").data)
    tru = np.asarray(_by_name(viewer.layers, "truth: true w").data)
    np.testing.assert_allclose(np.asarray(err.data), rec - tru, equal_nan=True)


def test_series_and_scan(make_napari_viewer, demo_run, tmp_path):
    import shutil

    from xtwin.viewer import open_viewer
    from xtwin.viewer._widget import ParticleWidget

    a, b = tmp_path / "m_t000.h5", tmp_path / "m_t001.h5"
    shutil.copy(demo_run / "limap.h5", a)
    shutil.copy(demo_run / "limap.h5", b)
    viewer = open_viewer([a, b, demo_run / "scan.h5"], show=False, widget=False)
    try:
        w = _by_name(viewer.layers, "series: lithiation w")
        assert w.data.shape[0] == 2 and w.axis_labels[0] == "time"
        proj = _by_name(viewer.layers, "scan: projections (counts)")
        assert proj.data.ndim == 4 and tuple(proj.axis_labels[:2]) == ("energy", "angle")
        widget = ParticleWidget(viewer)
        widget.analyze()
        pid = int(widget.particles[0]["id"])
        text = widget.particle_text(pid)
        assert "w(t) = " in text and text.count(",") >= 1
    finally:
        viewer.close()
