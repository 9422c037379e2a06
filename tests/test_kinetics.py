"""Rate drivers, persistent hot spots and internal pores on phantoms written without xtwin."""

from __future__ import annotations

import numpy as np
import pytest

from xtwin.analysis.kinetics import (
    hot_spots,
    internal_pore_lead,
    own_cores,
    particle_features,
    rate_drivers,
)


def _balls(shape, centres, radius):
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for i, c in enumerate(centres, start=1):
        ball = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= radius**2
        labels[ball & (labels == 0)] = i
    return labels


def test_features_of_touching_isolated_and_hollow_particles():
    labels = _balls((30, 30, 60), [(15, 15, 10), (15, 15, 20), (15, 15, 45)], 6)
    z, y, x = np.indices(labels.shape)
    hole = (z - 15) ** 2 + (y - 15) ** 2 + (x - 45) ** 2 <= 2**2
    labels[hole] = 0
    f = particle_features(labels, pix_um=0.5)
    assert f[1]["contact_fraction"] > 0.05 and f[2]["contact_fraction"] > 0.05
    assert f[3]["contact_fraction"] == 0.0
    assert f[1]["internal_pore_fraction"] == 0.0
    assert f[3]["internal_pore_fraction"] == pytest.approx(
        hole.sum() / (hole.sum() + (labels == 3).sum())
    )
    # the mean distance to the nearest non-active voxel: a solid ball of radius R has R / 4
    assert f[1]["pore_distance_um"] == pytest.approx(6 / 4 * 0.5, rel=0.35)
    # a hole brings the pore closer
    assert f[3]["pore_distance_um"] < f[1]["pore_distance_um"]


def test_rate_drivers_find_a_planted_relation_and_not_a_random_one():
    rng = np.random.default_rng(0)
    n = 40
    contact = rng.uniform(0, 0.5, n)
    feats = {i + 1: {"contact_fraction": float(c)} for i, c in enumerate(contact)}
    rates = [
        {
            "particle": i + 1,
            "rate_per_h": float(-0.1 - 0.2 * contact[i] + 0.01 * rng.standard_normal()),
            "diameter_um": float(rng.uniform(3, 8)),
            "depth_um": float(rng.uniform(0, 60)),
        }
        for i in range(n)
    ]
    d = rate_drivers(rates, feats)
    assert d["contact_fraction"]["related"] == "yes" and d["contact_fraction"]["spearman"] < -0.8
    assert d["depth_um"]["related"] == "no"


def _series(labels, fast, noise, rng, particle_rates=None):
    """Four maps 1 h apart: w falls at 0.1 per hour, 0.3 per hour in ``fast`` voxels, plus
    per-particle rates and voxel noise of ``noise``."""
    rate = np.where(labels > 0, -0.1, np.nan)
    rate[fast] = -0.3
    if particle_rates is not None:
        rate += np.concatenate([[0.0], particle_rates])[labels]
    return [0.9 + rate * t + noise * rng.standard_normal(labels.shape) for t in range(4)]


@pytest.mark.parametrize("case", ["persistent", "noise", "particle-level", "front"])
def test_hot_spots_persist_only_when_a_place_in_the_particle_keeps_reacting(case):
    """A cap of each particle reacting faster all along is a persistent hot spot; noise,
    whole particles faster than others, or a front moving in from the whole surface (the
    outer shell faster, the same all round) are not."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    centres = [(12, 12 + 24 * (i % 3), 12 + 24 * (i // 3)) for i in range(6)]
    labels = _balls((24, 72, 48), centres, 10)
    z, y, x = np.indices(labels.shape)
    depth = ndimage.distance_transform_edt(labels > 0)
    cap = np.zeros(labels.shape, bool)
    for i, c in enumerate(centres, start=1):
        cap |= (labels == i) & (x - c[2] > 5)  # the +x side
    fast = {"persistent": cap, "front": (labels > 0) & (depth <= 3)}.get(case, None)
    per_particle = np.linspace(-0.2, 0.0, 6) if case == "particle-level" else None
    w = _series(labels, np.zeros_like(cap) if fast is None else fast, 0.05, rng, per_particle)
    r = hot_spots((w[0], w[1], 1.0), (w[2], w[3], 1.0), own_cores(labels), depth)
    assert r["hot_spots_persist"] == ("yes" if case == "persistent" else "no"), r


def test_internal_pore_lead():
    centres = [(12, 12 + 24 * (i % 3), 12 + 24 * (i // 3)) for i in range(6)]
    labels = _balls((24, 72, 48), centres, 10)
    z, y, x = np.indices(labels.shape)
    near = np.zeros(labels.shape, bool)
    for c in centres:  # a closed internal pore off each centre
        d = np.sqrt((z - c[0]) ** 2 + (y - c[1] - 4) ** 2 + (x - c[2]) ** 2)
        labels[d <= 2] = 0
        near |= (d > 2) & (d <= 3.5)
    for lead, expected in ((True, "yes"), (False, "no")):
        rng = np.random.default_rng(4 + lead)
        w = _series(labels, near & (labels > 0) if lead else np.zeros_like(near), 0.02, rng)
        r = internal_pore_lead(w[0], w[3], labels, np.arange(4.0))
        assert r["internal_pores"] == expected, r
