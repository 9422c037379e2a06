"""Spectral clustering of XANES stacks (four or more energies), as MANTiS, PyMca and xanespy
users expect: every Ni voxel's spectrum normalized between its first (pre-edge) and last
(post-edge) energy, reduced by PCA to the components that carry the variance, and grouped by
k-means (seeded: the same map gives the same clusters); each cluster's mean spectrum and its
mean lithiation.

The centroids are fitted on a regular subsample of the voxels (about 2e5) and every voxel is
then assigned slice by slice, so a map of any size is clustered in bounded memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError

#: Voxels the centroids are fitted on (a regular subsample).
FIT_VOXELS = 200_000


def _normalized(mu: np.ndarray) -> np.ndarray:
    """(n_voxels, n_energy) spectra normalized to 0 at the first energy and 1 at the last."""
    step = mu[:, -1] - mu[:, 0]
    step = np.where(np.abs(step) > 1e-12, step, np.nan)
    return (mu - mu[:, :1]) / step[:, None]


def spectral_clusters(
    mu, mask, lithiation=None, *, k: int = 3, seed: int = 0, components: int = 3
) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
    """Cluster the Ni voxels of a stack by their normalized spectra.

    Parameters
    ----------
    mu : array-like, shape (n_energy, ...)
        Attenuation per energy (an HDF5 dataset is read slice by slice).
    mask : array-like of bool, shape mu.shape[1:]
        The voxels to cluster (the Ni mask).
    lithiation : array-like, optional
        The map's w, for each cluster's mean.
    k : int
        Clusters.
    seed : int
        Seed of the k-means initialization.
    components : int
        Principal components kept.

    Returns
    -------
    (labels, table, centres)
        Labels 1..k (0 outside the mask; ordered by the cluster's mean normalized absorbance
        at the middle energy, lowest first), one row per cluster, the mean normalized spectra
        (k, n_energy).

    Raises
    ------
    XtwinInputError
        Fewer than four energies, fewer voxels than clusters.
    """
    from scipy.cluster.vq import kmeans2

    n_e = mu.shape[0]
    if n_e < 4:
        raise XtwinInputError(
            f"spectral clustering needs four or more energies; this map has {n_e}"
        )
    shape = tuple(mu.shape[1:])
    n_z = shape[0]
    mask = np.asarray(mask, dtype=bool)
    total = int(mask.sum())
    if total < 10 * k:
        raise XtwinInputError(f"{total} Ni voxels are too few for {k} spectral clusters")
    stride = max(1, int(np.ceil(total / FIT_VOXELS)))
    fit, seen = [], 0
    for z in range(n_z):
        m = mask[z]
        if not m.any():
            continue
        spec = _normalized(np.asarray(mu[:, z], dtype=np.float64)[:, m].T)
        idx = (np.arange(spec.shape[0]) + seen) % stride == 0
        seen += spec.shape[0]
        fit.append(spec[idx])
    x = np.concatenate(fit)
    x = x[np.all(np.isfinite(x), axis=1)]
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[: min(components, n_e)]
    centroids, _ = kmeans2((x - mean) @ basis.T, k, minit="++", seed=np.random.default_rng(seed))
    labels = np.zeros(shape, dtype=np.int8)
    sums = np.zeros((k, n_e))
    counts = np.zeros(k, dtype=np.int64)
    w_sum = np.zeros(k)
    w_n = np.zeros(k, dtype=np.int64)
    for z in range(n_z):
        m = mask[z]
        if not m.any():
            continue
        spec = _normalized(np.asarray(mu[:, z], dtype=np.float64)[:, m].T)
        ok = np.all(np.isfinite(spec), axis=1)
        proj = (np.nan_to_num(spec) - mean) @ basis.T
        d = ((proj[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        lab = np.where(ok, np.argmin(d, axis=1) + 1, 0).astype(np.int8)
        labels[z][m] = lab
        for c in range(k):
            sel = lab == c + 1
            counts[c] += int(sel.sum())
            sums[c] += spec[sel].sum(axis=0)
            if lithiation is not None:
                w = np.asarray(lithiation[z])[m][sel]
                w = w[np.isfinite(w)]
                w_sum[c] += w.sum()
                w_n[c] += w.size
    centres = sums / np.maximum(counts, 1)[:, None]
    order = np.argsort(centres[:, n_e // 2])  # deterministic cluster numbers
    relabel = np.zeros(k + 1, dtype=np.int8)
    relabel[order + 1] = np.arange(1, k + 1)
    labels = relabel[labels]
    table = []
    for new, c in enumerate(order, start=1):
        row: dict[str, Any] = {
            "cluster": new,
            "voxels": int(counts[c]),
            "fraction": round(float(counts[c] / max(counts.sum(), 1)), 5),
            "mean_w": round(float(w_sum[c] / w_n[c]), 5) if w_n[c] else float("nan"),
        }
        table.append(row)
    return labels, table, centres[order]


def write_spectral(
    limap_path: str | os.PathLike, out: Path, *, k: int = 3, seed: int = 0
) -> dict[str, Path]:
    """Spectral clusters of a multi-energy Li map: ``clusters.csv`` (cluster, voxels,
    fraction, mean w, the mean normalized spectrum at each energy), ``clusters.h5``
    (``/clusters/labels``) and ``clusters.png`` (the mean spectra and a slice of the map)."""
    import h5py

    from xtwin._files import write_csv_atomic
    from xtwin.io import write_h5

    with h5py.File(limap_path, "r") as f:
        energies = np.atleast_1d(f["/recon/energy_eV"][()])
        labels, table, centres = spectral_clusters(
            f["/recon/mu"], f["/li/mask"][()].astype(bool), f["/li/lithiation"], k=k, seed=seed
        )
    for row, spec in zip(table, centres):
        for e, v in zip(energies, spec):
            row[f"norm_{e:.1f}eV"] = round(float(v), 5)
    files = {"clusters.csv": out / "clusters.csv", "clusters.h5": out / "clusters.h5"}
    write_csv_atomic(files["clusters.csv"], table, tuple(table[0]))
    write_h5(
        files["clusters.h5"],
        {"/clusters/labels": labels},
        {"/clusters": {"method": f"PCA + k-means (k={k}, seed={seed}) of normalized spectra"}},
    )
    files["clusters.png"] = _figure(labels, centres, energies, out / "clusters.png")
    return files


def _figure(labels: np.ndarray, centres: np.ndarray, energies: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin.plotting import save_png

    k = centres.shape[0]
    cmap = plt.get_cmap("tab10")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    for c in range(k):
        ax0.plot(energies, centres[c], "o-", color=cmap(c), label=f"cluster {c + 1}")
    ax0.set_xlabel("energy (eV)")
    ax0.set_ylabel("normalized absorbance")
    ax0.set_title("Mean spectrum of each cluster")
    ax0.legend()
    z = (
        int(np.argmax((labels > 0).reshape(labels.shape[0], -1).sum(axis=1)))
        if labels.ndim == 3
        else 0
    )
    img = labels[z] if labels.ndim == 3 else labels
    shown = np.ma.masked_equal(img, 0)
    im = ax1.imshow(
        shown, cmap=plt.get_cmap("tab10", 10), vmin=0.5, vmax=10.5, interpolation="nearest"
    )
    ax1.set_title(f"Clusters, slice {z}" if labels.ndim == 3 else "Clusters")
    ax1.set_xlabel("x (pixels)")
    ax1.set_ylabel("y (pixels)")
    fig.colorbar(im, ax=ax1, label="cluster", ticks=range(1, k + 1))
    return save_png(fig, path, dpi=100)
