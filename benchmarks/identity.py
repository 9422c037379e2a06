"""Which Li maps a change leaves bit for bit the same: the twin's default scenario and six
variants (run-out, magnification, rings, energy drift, two energies, seven energies) processed
under several options (row subset and small blocks, a memory limit, dask with two workers,
ASTRA, a given axis with another normalization convention), every dataset of every map hashed.

    python benchmarks/identity.py OUT_DIR [--against benchmarks/identity_results.json]

writes OUT_DIR/hashes.json and, with ``--against``, lists every dataset whose bytes differ
(exit 1 if any). Float results depend on the CPU's vector instructions and the libraries'
versions: compare runs made on the same machine with the same environment (the stored file
was made on the development machine, 2 cores, at commit fb56255, before the pipeline became a
package; the package matched it in all 135 datasets; the faster FBP that followed changes the
maps by design, so rerun this at the commit before a change and compare with that).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np

VARIANTS = {
    "default": {},
    "runout": {"acquisition": {"runout_px": 2.0, "jitter_px": 1.0}},
    "magnif": {"acquisition": {"magnification_per_eV": 1.89e-4}},
    "rings": {"acquisition": {"ring_strength": 0.01, "dead_pixel_fraction": 0.002}},
    "drift": {"acquisition": {"energy_drift_px": 1.0}},
    "multi": {
        "acquisition": {"energies_eV": [8320.0, 8335.0, 8343.0, 8347.0, 8352.0, 8360.0, 8400.0]}
    },
}

#: (scan, case, ProcessOptions fields, RunOptions fields)
CASES = [
    ("default", "default", {}, {}),
    ("default", "rows_blocks", {"rows": (10, 18)}, {"block_rows": 3, "workers": 1}),
    ("default", "memlimit", {}, {"memory_limit_bytes": 700_000_000, "workers": 2}),
    ("default", "dask2", {}, {"scheduler": "local", "workers": 2, "block_rows": 6}),
    ("default", "astra", {"method": "astra"}, {}),
    ("default", "center", {"center_offset_px": 0.5, "reference_convention": "athena"}, {}),
    ("runout", "runout", {}, {}),
    ("runout", "runout_off", {"align_projections": "off"}, {}),
    ("magnif", "magnif", {}, {}),
    ("rings", "rings", {"ring_removal": True}, {}),
    ("drift", "drift", {}, {}),
    ("two", "two", {}, {}),
    ("multi", "multi", {}, {}),
]


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_scans(root: Path) -> None:
    """The variants' scans (simulated once), and a two-energy scan cut from the default."""
    from xtwin.forward.scenario import default_scenario, scenario_from_dict
    from xtwin.forward.twin import simulate_to
    from xtwin.io import read_scan
    from xtwin.io.scan import write_scan

    base = tomllib.loads(default_scenario().to_toml())
    for name, over in VARIANTS.items():
        if not (root / name / "scan.h5").exists():
            simulate_to(scenario_from_dict(_merge(base, over), name), root / name, force=True)
    two = root / "two" / "scan.h5"
    if not two.exists():
        s = read_scan(root / "default" / "scan.h5")
        k = [0, 2]

        def pick(a):
            return None if a is None else np.asarray(a)[k]

        two.parent.mkdir(parents=True, exist_ok=True)
        write_scan(
            two,
            dataclasses.replace(
                s,
                data=s.data[k],
                flats=pick(s.flats),
                energy_eV=s.energy_eV[k],
                exposure_s=pick(s.exposure_s),
                flat_exposure_s=pick(s.flat_exposure_s),
            ),
        )


def hashes(path: Path) -> dict[str, str]:
    """SHA-256 (16 hex digits) of every dataset's bytes outside /provenance."""
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("provenance"):
                out[name] = hashlib.sha256(np.ascontiguousarray(obj[()]).tobytes()).hexdigest()[:16]

        f.visititems(visit)
    return out


def main() -> int:
    from xtwin.pipeline import ProcessOptions, RunOptions, process_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--against", type=Path, default=None)
    args = ap.parse_args()
    scans = args.out_dir / "scans"
    write_scans(scans)
    res = {}
    for scan, case, sci, run in CASES:
        d = scans / scan
        refs = (d / "reference_lithiated.csv", d / "reference_delithiated.csv")
        if scan == "two":
            refs = (None, None)
        out = args.out_dir / f"{case}.h5"
        out.unlink(missing_ok=True)
        process_file(
            [d / "scan.h5"], *refs, out, options=ProcessOptions(**sci), run=RunOptions(**run)
        )
        res[case] = hashes(out)
        print(case, "done", flush=True)
    (args.out_dir / "hashes.json").write_text(json.dumps(res, indent=1, sort_keys=True))
    if args.against is None:
        return 0
    ref = json.loads(args.against.read_text())["hashes"]
    diffs = [
        f"{case}/{name}"
        for case in ref
        for name in ref[case]
        if ref[case][name] != res.get(case, {}).get(name)
    ]
    n = sum(len(v) for v in ref.values())
    print(
        f"{len(ref)} maps, {n} datasets: {len(diffs)} differ" + "".join(f"\n  {d}" for d in diffs)
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
