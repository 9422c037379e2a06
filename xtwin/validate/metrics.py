"""Error metrics of a recovered Li map against the truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from xtwin.errors import XtwinInputError
from xtwin.io.limap import LiMap
from xtwin.io.truth import TruthData


def _scenario_name(toml_text: Any) -> str | None:
    if not isinstance(toml_text, str):
        return None
    import tomllib

    try:
        name = tomllib.loads(toml_text).get("name")
    except tomllib.TOMLDecodeError:
        return toml_text if "\n" not in toml_text else None
    return str(name) if name is not None else None


def check_same_simulation(limap: LiMap, truth: TruthData) -> None:
    """Refuse to compare a Li map with the truth of another scenario, seed or time point.

    The Li map's provenance carries the scan's sample metadata (scenario, seed, snapshot,
    written by ``xtwin simulate``); the truth file carries the same. A map from a real scan
    (no such metadata) is compared on shape and pixel size only.

    Raises
    ------
    XtwinInputError
        Naming what differs and the fix.
    """
    meta = limap.provenance.get("input_metadata", {}) or {}
    checks = [
        ("scenario", meta.get("scenario"), _scenario_name(truth.attrs.get("scenario"))),
        ("seed", meta.get("seed"), truth.attrs.get("seed")),
        ("time point (snapshot)", meta.get("snapshot"), truth.attrs.get("snapshot_index")),
    ]
    bad = [
        f"{what}: Li map {a!r}, truth {b!r}"
        for what, a, b in checks
        if a is not None and b is not None and str(a) != str(b)
    ]
    if bad:
        raise XtwinInputError(
            "the Li map and the truth come from different simulations ("
            + "; ".join(bad)
            + "); compare a Li map with the truth.h5 written beside its scan"
        )


@dataclass(frozen=True)
class VoxelMetrics:
    """Voxel-level errors inside the active material.

    Attributes
    ----------
    n : int
        Voxels compared (defined in the truth and recovered).
    coverage : float
        Fraction of the true active voxels that were recovered.
    rmse, bias, mae : float
        Of recovered minus true lithiation.
    z_score_std : float
        Standard deviation of error / predicted sigma (1 when the uncertainty is right).
    """

    n: int
    coverage: float
    rmse: float
    bias: float
    mae: float
    z_score_std: float

    def __post_init__(self) -> None:
        if self.n < 0 or not 0.0 <= self.coverage <= 1.0:
            raise ValueError(f"invalid voxel metrics: n={self.n}, coverage={self.coverage}")


@dataclass(frozen=True)
class ParticleMetrics:
    """Per-particle errors of the mean lithiation (truth labels).

    Attributes
    ----------
    n : int
        Particles compared.
    mae, max_abs_error, bias, rmse : float
        Of recovered minus true particle means (NaN without particles).
    table : tuple of dict
        Per particle: ``id``, ``n_voxels``, ``true``, ``recovered``, ``error``.
    """

    n: int
    mae: float
    max_abs_error: float
    bias: float
    table: tuple[dict[str, Any], ...] = ()
    rmse: float = float("nan")

    def __post_init__(self) -> None:
        if self.n != len(self.table):
            raise ValueError(f"{self.n} particles but {len(self.table)} table rows")


@dataclass(frozen=True)
class Metrics:
    """What :func:`compare` measures. Typed attributes; also readable as the JSON mapping
    (``m["voxel"]["rmse"]``, ``m.to_dict()``) that ``xtwin compare --json`` prints.

    Attributes
    ----------
    voxel : VoxelMetrics
    particle : ParticleMetrics
    false_positive_fraction : float
        Recovered voxels outside the true active material, over all recovered voxels.
    truth_mean_lithiation, recovered_mean_lithiation : float
        Means over the defined voxels.
    """

    voxel: VoxelMetrics
    particle: ParticleMetrics
    false_positive_fraction: float
    truth_mean_lithiation: float
    recovered_mean_lithiation: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.false_positive_fraction <= 1.0:
            raise ValueError(f"false_positive_fraction {self.false_positive_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping."""
        d = asdict(self)
        d["particle"]["table"] = list(d["particle"]["table"])
        return d

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]


def compare(limap: LiMap, truth: TruthData) -> Metrics:
    """Voxel and per-particle errors of the recovered lithiation inside the active material.

    Voxels are compared where both the truth (active material) and the recovery (Ni found)
    are defined. Per-particle means use the truth labels over those voxels.

    Returns
    -------
    Metrics
        Voxel and particle errors, false positives, means; ``to_dict()`` gives the JSON.
    """
    check_same_simulation(limap, truth)
    rec, tru = limap.lithiation, truth.lithiation
    if rec.shape != tru.shape:
        raise XtwinInputError(
            f"the Li map has shape {rec.shape} but the truth {tru.shape}; "
            "compare a Li map with the truth of the same simulation"
        )
    if not np.isclose(limap.pixel_size_m, truth.pixel_size_m, rtol=1e-6):
        raise XtwinInputError(
            f"pixel sizes differ: Li map {limap.pixel_size_m:g} m, truth {truth.pixel_size_m:g} m"
        )
    t_def = np.isfinite(tru)
    r_def = np.isfinite(rec)
    both = t_def & r_def
    if not both.any():
        raise XtwinInputError("the Li map and the truth share no defined voxel")
    err = (rec[both] - tru[both]).astype(np.float64)
    z = err / limap.sigma[both]
    labels = truth.labels[both]
    ids = np.unique(labels[labels > 0])
    rec_mean = np.asarray(ndimage.mean(rec[both], labels, ids))
    tru_mean = np.asarray(ndimage.mean(tru[both], labels, ids))
    n_vox = np.asarray(ndimage.sum(np.ones_like(labels), labels, ids))
    p_err = rec_mean - tru_mean
    table = tuple(
        {
            "id": int(i),
            "n_voxels": int(n),
            "true": round(float(t), 5),
            "recovered": round(float(r), 5),
            "error": round(float(r - t), 5),
        }
        for i, n, t, r in zip(ids, n_vox, tru_mean, rec_mean)
    )
    nan = float("nan")
    return Metrics(
        voxel=VoxelMetrics(
            n=int(both.sum()),
            coverage=float(both.sum() / max(t_def.sum(), 1)),
            rmse=float(np.sqrt(np.mean(err**2))),
            bias=float(err.mean()),
            mae=float(np.mean(np.abs(err))),
            z_score_std=float(np.std(z[np.isfinite(z)])),
        ),
        particle=ParticleMetrics(
            n=int(ids.size),
            mae=float(np.mean(np.abs(p_err))) if ids.size else nan,
            max_abs_error=float(np.max(np.abs(p_err))) if ids.size else nan,
            bias=float(np.mean(p_err)) if ids.size else nan,
            table=table,
            rmse=float(np.sqrt(np.mean(np.square(p_err)))) if ids.size else nan,
        ),
        false_positive_fraction=float((r_def & ~t_def).sum() / max(r_def.sum(), 1)),
        truth_mean_lithiation=float(np.nanmean(tru)),
        recovered_mean_lithiation=float(np.nanmean(rec)),
    )


def interior_mask(truth, erosion_px: int = 2) -> np.ndarray:
    """Active-material voxels at least ``erosion_px`` from any other phase (dense NMC)."""
    from scipy import ndimage

    from xtwin.io.truth import PHASE_ACTIVE

    active = truth.phases == PHASE_ACTIVE
    return ndimage.binary_erosion(active, iterations=erosion_px)


def ring_amplitude(error: np.ndarray, mask: np.ndarray, width_px: int = 5) -> float:
    """Amplitude of ring artefacts in an error map (z, y, x) about the slices' centre: the
    error averaged over the azimuth in 1-pixel radial bins (over every slice), minus its running
    mean over ``width_px`` bins, rms over the radii. A ring is constant along the azimuth and
    one or two pixels wide, so it survives the azimuthal average while noise and particle-scale
    structure do not; compare it with the voxel sigma of w (a ring below it is not visible).
    """
    from scipy import ndimage

    n_y, n_x = error.shape[-2:]
    yy, xx = np.mgrid[:n_y, :n_x]
    r = np.hypot(yy - (n_y - 1) / 2.0, xx - (n_x - 1) / 2.0).astype(int)
    r = np.broadcast_to(r, error.shape)
    ok = mask & np.isfinite(error)
    n_r = int(r.max()) + 1
    count = np.bincount(r[ok], minlength=n_r)
    total = np.bincount(r[ok], weights=error[ok], minlength=n_r)
    good = count >= 20
    if good.sum() < width_px + 2:
        return float("nan")
    prof = total[good] / count[good]
    smooth = ndimage.uniform_filter1d(prof, width_px, mode="nearest")
    return float(np.sqrt(np.mean((prof - smooth) ** 2)))
