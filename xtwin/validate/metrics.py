"""Error metrics of a recovered Li map against the truth."""

from __future__ import annotations

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


def compare(limap: LiMap, truth: TruthData) -> dict[str, Any]:
    """Voxel and per-particle errors of the recovered lithiation inside the active material.

    Voxels are compared where both the truth (active material) and the recovery (Ni found)
    are defined. Per-particle means use the truth labels over those voxels.

    Returns
    -------
    dict
        ``voxel`` (n, coverage, rmse, bias, mae, z_score_std: the std of error / sigma, 1 when
        the uncertainty is right), ``particle`` (n, mae, max_abs_error, bias, table) and
        ``false_positive_fraction`` (recovered voxels outside the true active material).
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
    return {
        "voxel": {
            "n": int(both.sum()),
            "coverage": float(both.sum() / max(t_def.sum(), 1)),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "bias": float(err.mean()),
            "mae": float(np.mean(np.abs(err))),
            "z_score_std": float(np.std(z[np.isfinite(z)])),
        },
        "particle": {
            "n": int(ids.size),
            "mae": float(np.mean(np.abs(p_err))) if ids.size else float("nan"),
            "max_abs_error": float(np.max(np.abs(p_err))) if ids.size else float("nan"),
            "bias": float(np.mean(p_err)) if ids.size else float("nan"),
            "table": [
                {
                    "id": int(i),
                    "n_voxels": int(n),
                    "true": round(float(t), 5),
                    "recovered": round(float(r), 5),
                    "error": round(float(r - t), 5),
                }
                for i, n, t, r in zip(ids, n_vox, tru_mean, rec_mean)
            ],
        },
        "false_positive_fraction": float((r_def & ~t_def).sum() / max(r_def.sum(), 1)),
        "truth_mean_lithiation": float(np.nanmean(tru)),
        "recovered_mean_lithiation": float(np.nanmean(rec)),
    }
