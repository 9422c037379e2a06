"""The particles dock widget: per-particle table (sortable, exported as CSV), a click on a
particle shows its w +- sigma, diameter, depth (and w(t) for a series), a histogram of w of the
selection, and the error map against a twin's truth.

The particles are those of ``xtwin analyze`` (the same function on the same map:
:func:`xtwin.analysis.lithiation.analyze_map`), so the table and the CSV agree.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: The table's columns: ``xtwin analyze``'s particles.csv, with units in the headers.
COLUMNS = (
    ("id", "id"),
    ("mean_w", "w"),
    ("sigma_mean_w", "sigma w"),
    ("diameter_um", "diameter (um)"),
    ("depth_um", "depth (um)"),
    ("n_voxels", "voxels"),
    ("spread_w", "spread of w"),
    ("surface_minus_core", "surface - core w"),
)


class _NumberItem(QTableWidgetItem):
    """A cell that sorts by its number, not its text."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = value

    def __lt__(self, other: QTableWidgetItem) -> bool:  # type: ignore[override]
        if isinstance(other, _NumberItem):
            return self.value < other.value
        return super().__lt__(other)


def _fmt(key: str, value: Any) -> str:
    if key in ("id", "n_voxels"):
        return str(int(value))
    if key in ("diameter_um", "depth_um"):
        return f"{float(value):.2f}"
    return f"{float(value):.4f}"


class ParticleWidget(QWidget):
    """Particles of the Li map shown in the viewer (see the module docstring)."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.particles: list[dict[str, Any]] = []
        self.labels: np.ndarray | None = None
        self.labels_layer = None
        self.path: str | None = None
        self.series_means: dict[int, list[float]] = {}

        self.source = QComboBox()
        self.find = QPushButton("Find particles")
        self.find.clicked.connect(self.analyze)
        self.info = QLabel("Open a Li map, then find its particles; click one to see it.")
        self.info.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self.table.setSortingEnabled(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.export = QPushButton("Export CSV...")
        self.export.clicked.connect(self._export_dialog)
        self.error_button = QPushButton("Error map against the truth")
        self.error_button.clicked.connect(self.add_error_map)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)

        top = QHBoxLayout()
        top.addWidget(self.source, 1)
        top.addWidget(self.find)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.info)
        lay.addWidget(self.table, 2)
        row = QHBoxLayout()
        row.addWidget(self.export)
        row.addWidget(self.error_button)
        lay.addLayout(row)
        lay.addWidget(self.canvas, 1)
        self.viewer.layers.events.inserted.connect(self._refresh_sources)
        self.viewer.layers.events.removed.connect(self._refresh_sources)
        self._refresh_sources()

    # -- the map ---------------------------------------------------------------------------

    def _refresh_sources(self, *_: Any) -> None:
        paths = []
        for layer in self.viewer.layers:
            md = layer.metadata
            if md.get("xtwin_kind") == "limap" and md.get("quantity") == "lithiation":
                paths.append(md["xtwin_path"])
            if md.get("xtwin_kind") == "series" and md.get("quantity") == "lithiation":
                paths.append(md["xtwin_paths"][0])
        current = self.source.currentText()
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItems(list(dict.fromkeys(paths)))
        if current in paths:
            self.source.setCurrentText(current)
        self.source.blockSignals(False)

    def _series_paths(self) -> list[str]:
        for layer in self.viewer.layers:
            md = layer.metadata
            if md.get("xtwin_kind") == "series" and md.get("xtwin_paths", [None])[0] == self.path:
                return list(md["xtwin_paths"])
        return []

    def analyze(self) -> None:
        """Particles of the chosen map, as ``xtwin analyze`` finds them."""
        from xtwin.analysis.lithiation import analyze_map
        from xtwin.analysis.report import load_map

        path = self.source.currentText()
        if not path:
            self.info.setText(
                "No Li map is open: open one with lithiation (three or more energies)."
            )
            return
        m, _ = load_map(path)
        a = analyze_map(m)
        self.path, self.particles, self.labels = path, a.particles, a.labels
        self._fill_table()
        geom = next(
            (
                (ly.scale, ly.units)
                for ly in self.viewer.layers
                if ly.metadata.get("xtwin_path") == path
                and ly.metadata.get("quantity") == "lithiation"
            ),
            None,
        )
        if self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            self.viewer.layers.remove(self.labels_layer)
        kw: dict[str, Any] = {"name": f"{Path(path).stem}: particles", "opacity": 0.35}
        if geom is not None:
            kw["scale"], kw["units"] = (
                tuple(geom[0])[-self.labels.ndim :],
                tuple(geom[1])[-self.labels.ndim :],
            )
        layer = self.viewer.add_labels(self.labels, **kw)
        layer.metadata.update({"xtwin_kind": "particles", "xtwin_path": path})
        layer.mouse_drag_callbacks.append(self._clicked)
        self.labels_layer = layer
        self.series_means = self._series_means()
        self.info.setText(
            f"{len(self.particles)} particles in {Path(path).name} (SNOW segmentation, as "
            "xtwin analyze); click one in the viewer, or select rows."
        )
        self._histogram()

    def _series_means(self) -> dict[int, list[float]]:
        """w(t) of each particle over an operando series (its voxels at the first time
        point; the maps are not registered across time here)."""
        paths = self._series_paths()
        if len(paths) < 2 or self.labels is None:
            return {}
        import h5py

        lab = self.labels.ravel()
        ids = np.array([int(p["id"]) for p in self.particles])
        out: dict[int, list[float]] = {int(i): [] for i in ids}
        for p in paths:
            with h5py.File(p, "r") as f:
                w = f["/li/lithiation"][()].ravel()
            ok = np.isfinite(w) & (lab > 0)
            sums = np.bincount(lab[ok], weights=w[ok], minlength=lab.max() + 1)
            counts = np.bincount(lab[ok], minlength=lab.max() + 1)
            for i in ids:
                out[int(i)].append(float(sums[i] / counts[i]) if counts[i] else float("nan"))
        return out

    # -- table -----------------------------------------------------------------------------

    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.particles))
        for r, p in enumerate(self.particles):
            for c, (key, _) in enumerate(COLUMNS):
                v = p.get(key, float("nan"))
                item = _NumberItem(float(v), _fmt(key, v))
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def table_rows(self) -> list[dict[str, float]]:
        """The table as shown (in its current order), as numbers."""
        rows = []
        for r in range(self.table.rowCount()):
            rows.append(
                {
                    key: self.table.item(r, c).value  # type: ignore[union-attr]
                    for c, (key, _) in enumerate(COLUMNS)
                }
            )
        return rows

    def export_csv(self, path: str | Path) -> Path:
        """The per-particle table as CSV (the columns of ``xtwin analyze``'s particles.csv)."""
        from xtwin._files import atomic_path

        path = Path(path)
        keys = [k for k, _ in COLUMNS]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            for row in self.table_rows():
                writer.writerow({k: _fmt(k, row[k]) for k in keys})
        return path

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export particles", "particles.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    # -- selection, click, histogram ---------------------------------------------------------

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectedItems()})
        return [int(self.table.item(r, 0).value) for r in rows]  # type: ignore[union-attr]

    def _selection_changed(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            self.show_particle(ids[0])
        self._histogram()

    def _clicked(self, layer, event) -> None:
        value = layer.get_value(event.position, world=True)
        if value:
            self.select(int(value))

    def select(self, pid: int) -> None:
        """Select particle ``pid`` in the table and show it."""
        for r in range(self.table.rowCount()):
            if int(self.table.item(r, 0).value) == pid:  # type: ignore[union-attr]
                self.table.selectRow(r)
                break
        self.show_particle(pid)

    def particle_text(self, pid: int) -> str:
        """What the widget says of particle ``pid``."""
        p = next((q for q in self.particles if int(q["id"]) == pid), None)
        if p is None:
            return f"particle {pid}: not in the table (a fragment below the size limit)"
        text = (
            f"particle {pid}: w = {p['mean_w']:.4f} +- {p['sigma_mean_w']:.4f}, diameter "
            f"{p['diameter_um']:.2f} um, depth {p['depth_um']:.2f} um, {int(p['n_voxels'])} voxels"
        )
        if pid in self.series_means:
            text += "; w(t) = " + ", ".join(f"{v:.3f}" for v in self.series_means[pid])
        return text

    def show_particle(self, pid: int) -> None:
        self.info.setText(self.particle_text(pid))

    def _histogram(self) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        ids = self.selected_ids()
        if self.labels is not None and self.path is not None:
            import h5py

            with h5py.File(self.path, "r") as f:
                w = f["/li/lithiation"][()]
            sel = np.isin(self.labels, ids) if ids else self.labels > 0
            vals = w[sel & np.isfinite(w)]
            ax.hist(vals, bins=40, range=(0, 1), color="#3b528b")
            what = f"{len(ids)} selected particle(s)" if ids else "all particles"
            ax.set_title(f"w of {what}", fontsize=9)
        ax.set_xlabel("lithiation w")
        ax.set_ylabel("voxels")
        self.canvas.draw_idle()

    # -- truth -----------------------------------------------------------------------------

    def add_error_map(self) -> None:
        """Recovered minus true w, where both exist (a truth file of the same grid open)."""
        path = self.path or self.source.currentText()
        truth = next(
            (
                ly
                for ly in self.viewer.layers
                if ly.metadata.get("xtwin_kind") == "truth"
                and ly.metadata.get("quantity") == "lithiation"
            ),
            None,
        )
        rec = next(
            (
                ly
                for ly in self.viewer.layers
                if ly.metadata.get("xtwin_path") == path
                and ly.metadata.get("quantity") == "lithiation"
            ),
            None,
        )
        if truth is None or rec is None:
            self.info.setText("Open a Li map and its truth file (xtwin view limap.h5 truth.h5).")
            return
        if tuple(truth.data.shape) != tuple(rec.data.shape):
            self.info.setText(
                f"the truth's grid {tuple(truth.data.shape)} differs from the map's "
                f"{tuple(rec.data.shape)}: no error map"
            )
            return
        err = rec.data - truth.data
        layer = self.viewer.add_image(
            err,
            name=f"{Path(path).stem}: error (recovered - true w)",
            colormap="bwr",
            contrast_limits=(-0.2, 0.2),
            scale=rec.scale,
            units=rec.units,
        )
        layer.metadata.update({"xtwin_kind": "error", "xtwin_path": path, "quantity": "error"})
