"""xtwin's SNOW partition (scipy + scikit-image) against porespy's, and its physical sense."""

from __future__ import annotations

import numpy as np
import pytest

from xtwin.analysis.partition import snow_partition


def _spheres(centres, radii, shape):
    zz, yy, xx = np.indices(shape)
    im = np.zeros(shape, dtype=bool)
    for (z, y, x), r in zip(centres, radii):
        im |= (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return im


def test_two_touching_spheres_split_in_two():
    im = _spheres([(20, 20, 14), (20, 20, 29)], [8, 8], (40, 40, 44))
    labels = snow_partition(im)
    assert labels.max() == 2
    assert np.all((labels > 0) == im)
    # each sphere's centre in its own region, regions of equal size within 5 %
    assert labels[20, 20, 14] != labels[20, 20, 29]
    sizes = np.bincount(labels.ravel())[1:]
    assert abs(sizes[0] - sizes[1]) < 0.05 * sizes.mean()


def test_empty_and_single():
    assert snow_partition(np.zeros((8, 8, 8), bool)).max() == 0
    assert snow_partition(_spheres([(10, 10, 10)], [6], (20, 20, 20))).max() == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_same_as_porespy(seed):
    from scipy import ndimage

    ps = pytest.importorskip("porespy")
    noise = np.random.default_rng(seed).standard_normal((48, 52, 56))
    smooth = ndimage.gaussian_filter(noise, 3.0)
    im = smooth > np.quantile(smooth, 0.4)  # 60 % solid blobs, as porespy's blobs()
    ours = snow_partition(im, r_max=4, sigma=0.4)
    theirs = ps.filters.snow_partitioning(im, r_max=4, sigma=0.4).regions
    np.testing.assert_array_equal(ours, theirs)
