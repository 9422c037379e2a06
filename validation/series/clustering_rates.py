"""False-positive rate and power of the series analysis's clustering test (Moran's I of the
particle rates beyond size, permutation p-value), over seeds of the sphere phantoms of
tests/test_series.py (30 particles, 4 time points, still sample): activity regions off (rates
drawn at random) and on (the rate set by the position across the sample).

    python validation/series/clustering_rates.py [--seeds 20]

Writes validation/series/clustering_rates.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.test_series import _write_series  # noqa: E402
from xtwin.analysis.series import analyze_series, load_series  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    out: dict[str, list[float]] = {"off": [], "on": []}
    for seed in range(args.seeds):
        for key, clustered in (("off", False), ("on", True)):
            with tempfile.TemporaryDirectory() as tmp:
                paths, _ = _write_series(
                    Path(tmp),
                    moving=False,
                    seed=100 + seed,
                    n=30,
                    radii=(3.5, 5.0),
                    clustered=clustered,
                )
                p = analyze_series(load_series(paths)).summary["clustering_p_value"]
            out[key].append(p)
            print(f"seed {100 + seed} activity regions {key}: p = {p:.3f}", flush=True)
    result = {
        "seeds": args.seeds,
        "particles": 30,
        "false_positive_rate_at_5pc": sum(p < 0.05 for p in out["off"]) / args.seeds,
        "power_at_5pc": sum(p < 0.05 for p in out["on"]) / args.seeds,
        "p_values": out,
        "activity_strength": "rate 0.12 to 0.02 per hour from one side of the sample to the other",
    }
    path = Path(__file__).with_name("clustering_rates.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "p_values"}, indent=2))


if __name__ == "__main__":
    main()
