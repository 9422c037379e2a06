"""A plan checked on the twin: write the plan as a scenario, simulate, process, compare.

What ``xtwin plan --verify`` runs. The twin and the pipeline are the same code that processes
real data; the measured errors are the per-voxel RMSE in the interior of the particles (where
the noise model applies: dense NMC, no partial volume) and the particle RMSE (the mean of
each particle against its true mean).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xtwin.plan.planner import Plan


def plan_scenario(plan: Plan, base=None, *, seed: int | None = None, energy_offset_eV: float = 0.0):
    """The twin scenario of a plan: ``base`` (default: the demo's scenario) with the plan's
    energies, photons per energy, angles and pixel size."""
    from xtwin.forward.scenario import default_scenario, validate_scenario

    sc = base or default_scenario()
    photons = np.asarray(plan.photons_per_pixel, dtype=float)
    acq = dataclasses.replace(
        sc.acquisition,
        energies_eV=tuple(float(e) for e in plan.energies_eV),
        photons_per_pixel=float(photons.mean()),
        photon_split=tuple(float(x) for x in photons / photons.mean()),
        n_angles=int(plan.n_angles),
        energy_offset_eV=float(energy_offset_eV),
    )
    sc = dataclasses.replace(sc, acquisition=acq, name=f"{sc.name}-plan")
    if seed is not None:
        sc = sc.replace_seed(seed)
    validate_scenario(sc, "plan scenario")
    return sc


def verify_plan(plan: Plan, *, seed: int = 7, energy_offset_eV: float = 0.0) -> dict[str, Any]:
    """Run the twin and the pipeline with the plan; measured against predicted."""
    from xtwin.validate.campaign import Run, run_one

    sc = plan_scenario(plan, energy_offset_eV=energy_offset_eV)
    measured = run_one(sc.to_toml(), Run(sc.name), seed)
    return {
        "scenario": sc.to_toml(),
        "measured": measured,
        "predicted": {
            "level": plan.level,
            "total": plan.predicted_total,
            "noise": plan.predicted_sigma,
            "systematic": plan.predicted_systematic,
        },
        "energy_offset_eV": energy_offset_eV,
    }
