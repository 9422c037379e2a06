"""Spectral clustering of XANES stacks: two populations of voxels with different Ni edges
(written here, not by the twin) come back as two clusters, through xtwin analyze."""

from __future__ import annotations

import csv

import numpy as np
from scipy.special import erf

from xtwin.analysis.spectral import spectral_clusters
from xtwin.cli import main
from xtwin.io.limap import LiMap, write_limap

ENERGIES = np.array([8320.0, 8335.0, 8342.0, 8346.0, 8350.0, 8355.0, 8370.0, 8400.0])


def _stack(seed=0):
    """Two halves of a block of Ni voxels whose edges sit 3 eV apart, with 2 % noise."""
    rng = np.random.default_rng(seed)
    shape = (6, 40, 40)
    truth = np.zeros(shape, np.int8)
    truth[:, 5:35, 5:20] = 1
    truth[:, 5:35, 20:35] = 2
    edge = {1: 8344.0, 2: 8347.0}
    mu = np.zeros((ENERGIES.size,) + shape, np.float32)
    for c, e0 in edge.items():
        spec = 1.0 + 0.5 * (1 + erf((ENERGIES - e0) / 2.5))
        mu[:, truth == c] = spec[:, None]
    mu *= 1 + 0.02 * rng.standard_normal(mu.shape).astype(np.float32)
    return mu, truth


def test_two_edges_two_clusters():
    mu, truth = _stack()
    labels, table, centres = spectral_clusters(mu, truth > 0, k=2)
    inside = truth > 0
    agree = np.mean(labels[inside] == truth[inside])  # the numbering follows the mid absorbance
    assert max(agree, 1 - agree) > 0.97
    assert sum(r["voxels"] for r in table) == inside.sum()
    assert centres.shape == (2, ENERGIES.size)


def test_analyze_of_a_stack_writes_clusters(tmp_path):
    mu, truth = _stack(1)
    inside = truth > 0
    w = np.where(inside, 0.5, np.nan).astype(np.float32)
    lm = LiMap(
        lithiation=w,
        sigma=np.where(inside, 0.02, np.nan).astype(np.float32),
        mask=inside,
        edge_jump_per_m=np.where(inside, 1.0, 0.0).astype(np.float32),
        mu_per_m=mu,
        mu_sigma_per_m=np.full_like(mu, 0.01),
        energy_eV=ENERGIES,
        pixel_size_m=1e-7,
        edge={"fit_chi2": np.ones(truth.shape, np.float32)},
        mode="multi-energy",
    )
    path = tmp_path / "stack.h5"
    write_limap(path, lm)
    assert main(["analyze", str(path), "-o", str(tmp_path / "an")]) == 0
    with open(tmp_path / "an" / "clusters.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and sum(int(r["voxels"]) for r in rows) == inside.sum()
    assert (tmp_path / "an" / "clusters.png").stat().st_size > 5000
