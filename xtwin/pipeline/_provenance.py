"""The Li map's provenance, rendered from the records of the run (no structured value is
parsed back out of text)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from xtwin import __version__
from xtwin._provenance import package_versions
from xtwin.pipeline._plan import BlockPlan
from xtwin.pipeline._references import References, mode_notes
from xtwin.pipeline.options import ProcessOptions, RunOptions
from xtwin.retrieve.energy_scale import EnergyOffset
from xtwin.retrieve.three_energy import Calibration


@dataclass(frozen=True)
class Prepared:
    """What is known before the blocks run: references, calibration, plan."""

    refs: References
    calibration: Calibration
    conventions: dict[str, Any]
    plan: BlockPlan
    energy_offset: EnergyOffset | None = None


@dataclass(frozen=True)
class Outcome:
    """What the run itself reports."""

    clamped: int = 0
    resumed: int = 0
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    timing_s: dict[str, float] = dataclasses.field(default_factory=dict)


def notes(p: Prepared, outcome: Outcome) -> list[str]:
    """Every note of the run, in the order the steps ran."""
    plan = p.plan
    h = plan.ctx.source.header
    out = list(h.notes) + plan.notes() + mode_notes(p.calibration, p.refs) + p.refs.notes()
    if outcome.clamped:
        out.append(f"{outcome.clamped} values at or below zero after dark subtraction were clamped")
    if outcome.resumed:
        out.append(
            f"resumed: {outcome.resumed} of {plan.n_rows} rows were taken from the interrupted run"
        )
    if not h.is_tomography:
        out.append("2D XANES: retrieval on optical density, no reconstruction")
    return out


def provenance(
    p: Prepared, options: ProcessOptions, run: RunOptions, outcome: Outcome
) -> dict[str, Any]:
    """The ``/provenance`` attributes of the Li map."""
    plan = p.plan
    ctx = plan.ctx
    h = ctx.source.header
    return {
        "xtwin_version": __version__,
        "inputs": outcome.inputs,
        **p.refs.provenance,
        "options": {**options.key(), "center_offset_px": ctx.center_offset_px},
        "run_options": dataclasses.asdict(run),
        "rotation_center_search": plan.center.search,
        "rotation_center_px": ctx.center_offset_px,
        "rows": list(plan.row_range),
        "reconstruction": {"method": options.method},
        "energy_magnification": plan.registration.magnification,
        "projection_alignment": plan.runout.record,
        "energy_registration_px": plan.registration.provenance(),
        "calibration": p.calibration.as_dict(),
        **(
            {"energy_offset_eV": p.energy_offset.provenance()}
            if p.energy_offset is not None
            else {}
        ),
        "normalization_conventions": p.conventions,
        "mask": plan.mask.provenance(options.min_jump_snr, options.min_jump_fraction),
        "memory": plan.memory.as_dict(),
        "notes": notes(p, outcome),
        "versions": package_versions("numpy", "h5py", "xraylib", "astra-toolbox", "finufft"),
        "input_metadata": {str(k): v for k, v in h.metadata.items()},
        "timing_s": {k: round(v, 3) for k, v in outcome.timing_s.items()},
    }
