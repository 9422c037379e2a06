"""Regenerate the Chantler-versus-xraylib table of docs/physics.md.

Needs the optional extra: ``pip install ".[docs]"`` (xraydb, which ships the Chantler tables).
Chantler's tables include no near-edge structure either, so only energies away from the Ni
edge are compared.
"""

from __future__ import annotations

import numpy as np
import xraydb
import xraylib

FORMULA = "LiNi0.5Mn0.3Co0.2O2"


def chantler_mu_rho(energy_eV: float) -> float:
    comp = xraylib.CompoundParser(FORMULA)
    total = 0.0
    for z, w in zip(comp["Elements"], comp["massFractions"]):
        sym = xraylib.AtomicNumberToSymbol(z)
        total += w * float(xraydb.mu_chantler(sym, energy=energy_eV, photo=False, incoh=False))
    return total


def main() -> None:
    print("| E (eV) | xraylib mu/rho (cm2/g) | Chantler mu/rho (cm2/g) | Chantler / xraylib - 1 |")
    print("|---|---|---|---|")
    for e in (8200.0, 8300.0, 8320.0, 8400.0, 8500.0):
        a = xraylib.CS_Total_CP(FORMULA, e / 1000)
        b = chantler_mu_rho(e)
        print(f"| {e:.0f} | {a:.2f} | {b:.2f} | {100 * (b / a - 1):+.2f} % |")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
