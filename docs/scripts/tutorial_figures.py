"""Regenerate the tutorials' figures (docs/tutorials/figures) from the real SSRL frames and a
twin scenario. Run from the project root: ``python docs/scripts/tutorial_figures.py``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from xtwin.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIG = ROOT / "docs" / "tutorials" / "figures"
FRAMES = ROOT.parent / "shared" / "data" / "txm" / "ssrl_6-2c_nca"
TOOTH = ROOT.parent / "shared" / "data" / "txm" / "tomopy" / "tooth.h5"


def run(args: list[str]) -> None:
    rc = main(args)
    if rc != 0:
        raise SystemExit(f"xtwin {' '.join(args)} failed ({rc})")


def tooth(t: Path) -> None:
    """tomopy's measured tooth (one energy, no pixel size): process and report."""
    run(["process", str(TOOTH), "-o", str(t / "tooth_mu.h5")])
    run(["report", str(t / "tooth_mu.h5"), "-o", str(t / "tooth_report")])
    shutil.copy(t / "tooth_report" / "attenuation.png", FIG / "tooth_attenuation.png")


def main_() -> None:
    FIG.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        tooth(t)
        run(["convert", *map(str, sorted(FRAMES.glob("*.xrm"))), "-o", str(t / "nca.h5")])
        run(["process", str(t / "nca.h5"), "-o", str(t / "nca_edge.h5")])
        run(["report", str(t / "nca_edge.h5"), "-o", str(t / "nca_report")])
        shutil.copy(t / "nca_report" / "edge.png", FIG / "ssrl_nca_edge_jump.png")
        run(["simulate", str(ROOT / "synthetic" / "hot_spots.toml"), "-o", str(t / "twin")])
        run(
            [
                "process",
                str(t / "twin" / "scan.h5"),
                "--lithiated",
                str(t / "twin" / "reference_lithiated.csv"),
                "--delithiated",
                str(t / "twin" / "reference_delithiated.csv"),
                "-o",
                str(t / "twin" / "limap.h5"),
            ]
        )
        run(["analyze", str(t / "twin" / "limap.h5"), "-o", str(t / "rec")])
        run(["analyze", str(t / "twin" / "truth.h5"), "-o", str(t / "tru")])
        for kind in ("rec", "tru"):
            for name in ("slices", "profiles", "particles"):
                shutil.copy(t / kind / f"{name}.png", FIG / f"hot_spots_{kind}_{name}.png")


if __name__ == "__main__":
    main_()
