"""Figures shared by the twin's reports and ``validate``: one place for plotting helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xtwin._files import atomic_path


def save_png(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (no half-written file) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


def plot_orthoslices(
    phases: np.ndarray, voxel_m: float, out: str | os.PathLike, title: str = ""
) -> Path:
    """Orthogonal slices (xy at mid depth, xz and yz through the centre) of a phase volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#9ecae1", "#3f3f3f", "#d95f0e", "#ffffff", "#f0f0f0"])
    codes = np.where(phases == 255, 4, np.minimum(phases, 3))
    nz, ny, nx = codes.shape
    um = voxel_m * 1e6
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), constrained_layout=True)
    views = (
        (codes[nz // 2], "xy at mid depth", (0, nx * um, ny * um, 0), "x", "y"),
        (codes[:, ny // 2, :], "xz (depth down)", (0, nx * um, nz * um, 0), "x", "z"),
        (codes[:, :, nx // 2], "yz (depth down)", (0, ny * um, nz * um, 0), "y", "z"),
    )
    for ax, (img, name, ext, xl, yl) in zip(axes, views):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=4, extent=ext, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel(f"{xl} (um)")
        ax.set_ylabel(f"{yl} (um)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(4)]
    fig.legend(
        handles,
        ["electrolyte", "NMC532", "carbon-binder", "closed pore"],
        loc="lower center",
        ncol=4,
    )
    fig.suptitle(title)
    out = Path(out)
    save_png(fig, out, dpi=90)
    return out
