"""Regenerate tests/data/small_scan.h5 and its reference spectra: the twin's default scenario
(seed as in synthetic/default.toml), detector rows 16:24 of its scan. CI processes it in the
processing-only install (without the twin's packages). Needs the twin:
``pip install ".[twin]"; python tests/data/make_small_scan.py``."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from xtwin.cli import main
from xtwin.io.scan import write_scan
from xtwin.io.source import read_scan

HERE = Path(__file__).resolve().parent
ROWS = slice(16, 24)


def make() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "twin"
        root = HERE.parents[1]
        if main(["simulate", str(root / "synthetic" / "default.toml"), "-o", str(out)]) != 0:
            raise SystemExit("simulate failed")
        scan = read_scan(out / "scan.h5")
        small = dataclasses.replace(
            scan,
            data=scan.data[:, :, ROWS].copy(),
            flats=None if scan.flats is None else scan.flats[:, :, ROWS].copy(),
            darks=None if scan.darks is None else scan.darks[:, ROWS].copy(),
            provenance={**scan.provenance, "cropped_rows": [ROWS.start, ROWS.stop]},
        )
        write_scan(HERE / "small_scan.h5", small)
        for name in ("reference_lithiated.csv", "reference_delithiated.csv"):
            shutil.copy(out / name, HERE / name)


if __name__ == "__main__":
    make()
