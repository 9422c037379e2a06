"""Ring removal: xtwin's stripe filter against algotom's stripe-removal methods, side by side.

Sinograms of an analytic phantom (discs, exact chords; independent of xtwin's twin) get the
stripes of a detector whose per-pixel gain differs between the flats and the projections
(1 % rms, and 1 % of the pixels 5 % off) and Gaussian noise of 1 % absorbance. Each method
removes the stripes; the slices are reconstructed with the same filtered back-projection and
compared with the slices of the same noisy sinograms without stripes:

* ``ring_rms``: the error averaged over the azimuth in 1-pixel rings about the axis,
  high-passed along the radius (what a ring is), rms;
* ``rmse``: the whole error inside the field of view (what the method also does to the
  structure);
* ``seconds``: per sinogram, on this machine.

    python benchmarks/rings.py [--cols 512] [--angles 721] [--slices 8] [--json OUT]

algotom is in the ``bench`` extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def phantom_sinograms(n_col: int, n_angle: int, n_slice: int, seed: int = 0) -> np.ndarray:
    """(n_slice, n_angle, n_col) exact parallel projections (pixel units) of random discs
    inside the field of view, other discs in every slice."""
    rng = np.random.default_rng(seed)
    theta = np.radians(np.linspace(0.0, 180.0, n_angle, endpoint=False))[:, None]
    s = np.arange(n_col)[None, :] - (n_col - 1) / 2.0
    out = np.zeros((n_slice, n_angle, n_col))
    r_fov = 0.45 * n_col
    for k in range(n_slice):
        out[k] += 2 * 0.002 * np.sqrt(np.clip(r_fov**2 - s**2, 0, None))  # the pillar
        for _ in range(40):
            r = rng.uniform(0.02, 0.08) * n_col
            rho = rng.uniform(0, r_fov - r)
            phi = rng.uniform(0, 2 * np.pi)
            x0, y0 = rho * np.cos(phi), rho * np.sin(phi)
            d = s - (x0 * np.cos(theta) + y0 * np.sin(theta))
            out[k] += 2 * rng.uniform(0.005, 0.02) * np.sqrt(np.clip(r * r - d * d, 0, None))
    return out.astype(np.float32)


def add_stripes(sino: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stripes of per-pixel gain errors: 1 % rms for every pixel, 5 % for 1 % of them (the
    same pixel in every slice's row is another pixel: each row has its own)."""
    n_s, _, n_c = sino.shape
    gain = 1 + 0.01 * rng.standard_normal((n_s, 1, n_c))
    bad = rng.random((n_s, 1, n_c)) < 0.01
    gain = np.where(bad, 1 + 0.05 * rng.choice([-1, 1], size=gain.shape), gain)
    return (sino - np.log(gain)).astype(np.float32)


def ring_rms(err: np.ndarray) -> float:
    """Rings in error slices (n, y, x): the azimuthal mean in 1-pixel rings, high-passed along
    the radius (5-pixel running mean removed), rms over the radii inside the field."""
    from scipy import ndimage

    n = err.shape[-1]
    yy, xx = np.indices((n, n)) - (n - 1) / 2.0
    r = np.hypot(yy, xx).astype(int)
    prof = np.stack([ndimage.mean(e, r, index=np.arange(n // 2)) for e in err])
    hp = prof - ndimage.uniform_filter1d(prof, 5, axis=1)
    return float(np.sqrt(np.mean(hp[:, 3 : int(0.45 * n) - 3] ** 2)))


def methods() -> dict:
    """name -> function(sinogram (n_angle, n_col)) -> sinogram."""
    from xtwin.prep.rings import remove_stripes

    out = {
        "none": lambda s: s,
        "xtwin (smoothing filter)": lambda s: remove_stripes(s[:, None, :])[0][:, 0, :],
    }
    try:
        import algotom.prep.removal as rem
    except ImportError:
        print("algotom is not installed (pip install -e '.[bench]'): xtwin only")
        return out
    out.update(
        {
            "algotom sorting": lambda s: rem.remove_stripe_based_sorting(s, size=21),
            "algotom filtering": lambda s: rem.remove_stripe_based_filtering(s, sigma=3, size=21),
            "algotom fft": lambda s: rem.remove_stripe_based_fft(s),
            "algotom all-stripe": lambda s: rem.remove_all_stripe(s, snr=3, la_size=51, sm_size=21),
        }
    )
    return out


def run(n_col: int, n_angle: int, n_slice: int) -> dict:
    from xtwin.recon.fourier import FourierFBP

    rng = np.random.default_rng(1)
    clean = phantom_sinograms(n_col, n_angle, n_slice)
    noisy = clean + 0.01 * rng.standard_normal(clean.shape).astype(np.float32)
    striped = add_stripes(noisy, rng)
    theta = np.linspace(0.0, 180.0, n_angle, endpoint=False)
    geom = FourierFBP(n_col, theta)
    ref = geom.fbp(noisy)
    yy, xx = np.indices((n_col, n_col)) - (n_col - 1) / 2.0
    fov = np.hypot(yy, xx) < 0.45 * n_col
    rows = []
    for name, fn in methods().items():
        t = time.perf_counter()
        fixed = np.stack([np.asarray(fn(s), dtype=np.float32) for s in striped])
        sec = (time.perf_counter() - t) / n_slice
        err = geom.fbp(fixed) - ref
        rows.append(
            {
                "method": name,
                "seconds": round(sec, 4),
                "ring_rms": float(ring_rms(err)),
                "rmse": float(np.sqrt(np.mean(err[:, fov] ** 2))),
            }
        )
        print(
            f"{name:26s} {sec:8.4f} s/sinogram  ring rms {rows[-1]['ring_rms']:.2e}  "
            f"RMSE {rows[-1]['rmse']:.2e}",
            flush=True,
        )
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "cols": n_col,
        "angles": n_angle,
        "slices": n_slice,
        "methods": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--angles", type=int, default=721)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--json", default=str(Path(__file__).with_name("rings_results.json")))
    args = ap.parse_args()
    res = run(args.cols, args.angles, args.slices)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
