"""The napari plugin (``pip install "xtwin[viewer]"``): a reader for every file xtwin writes
or reads and a particles dock widget; ``xtwin view FILE ...`` opens them.

Nothing here imports napari or Qt at import time: the reader module needs only h5py and dask,
the widget imports Qt when napari makes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["open_viewer"]


def open_viewer(paths: Sequence[str | os.PathLike], *, show: bool = True, widget: bool = True):
    """A napari viewer with ``paths`` opened by xtwin's reader (Li maps of one shape given
    together: an operando series on a time axis) and the particles widget docked.

    Returns
    -------
    napari.Viewer
    """
    import napari

    from xtwin.errors import XtwinInputError
    from xtwin.viewer._reader import file_kind, read_layers

    names: list[str] = [str(p) for p in paths]
    for p in names:
        if file_kind(p) is None:
            raise XtwinInputError(
                f"{p} is not a file xtwin reads (a Li map, truth, scan or single-energy map "
                "in HDF5); check the path"
            )
    viewer = napari.Viewer(
        show=show, title="xtwin: " + ", ".join(os.path.basename(p) for p in paths)
    )
    limaps = [p for p in names if file_kind(p) == "limap"]
    groups: list[list[str]] = []
    if len(limaps) > 1 and _same_shape(limaps):
        groups.append(limaps)  # an operando series
        rest = [p for p in names if p not in limaps]
    else:
        rest = names
    groups += [[p] for p in rest]
    for group in groups:
        for data, kwargs, kind in read_layers(group if len(group) > 1 else group[0]):
            getattr(viewer, f"add_{kind}")(data, **kwargs)
    if widget:
        from xtwin.viewer._widget import ParticleWidget

        viewer.window.add_dock_widget(ParticleWidget(viewer), name="Particles", area="right")
    return viewer


def _same_shape(paths: list[str]) -> bool:
    import h5py

    shapes = set()
    for p in paths:
        with h5py.File(p, "r") as f:
            shapes.add(f["/li/lithiation"].shape)
    return len(shapes) == 1
