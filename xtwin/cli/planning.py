"""Commands for planning an experiment: plan, physics (spectra, dose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from xtwin.cli._app import cli
from xtwin.errors import XtwinInputError


def _float_list(text: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise XtwinInputError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise XtwinInputError(f"{what} is empty; give e.g. 8300,8345,8400")
    return vals


@cli.command()
@click.option("--target-sigma", type=float, required=True, help="Wanted error of w, e.g. 0.02.")
@click.option(
    "--level",
    type=click.Choice(["voxel", "particle"]),
    default="particle",
    show_default=True,
    help="The error of one voxel of dense NMC, or of a particle's mean.",
)
@click.option("--max-dose-gy", type=float, default=None, help="Refuse plans above this NMC dose.")
@click.option(
    "--diameter-um", type=float, default=23.04, show_default=True, help="Sample diameter."
)
@click.option(
    "--pixel-size-nm", type=float, default=400.0, show_default=True, help="Pixel at the sample."
)
@click.option(
    "--particle-diameter-um",
    type=float,
    default=7.0,
    show_default=True,
    help="For --level particle.",
)
@click.option("--lithiation", type=float, default=0.5, show_default=True, help="Expected w.")
@click.option(
    "--electrolyte-um",
    type=float,
    default=0.0,
    show_default=True,
    help="Electrolyte layer in the beam.",
)
@click.option(
    "--energy-uncertainty-ev",
    type=float,
    default=0.0,
    show_default=True,
    help="Energy calibration uncertainty counted as a systematic term.",
)
@click.option(
    "--quick-xanes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Plan a quick 2D XANES of N energies (8+) to calibrate the energy scale (its dose "
    "counts; the calibration term drops to 0.05 eV).",
)
@click.option(
    "--ni-chemistry",
    type=click.Choice(["two-state", "three-state"]),
    default="two-state",
    show_default=True,
    help="Ni K-edge model of the sample (three-state: the linear retrieval's model bias counts).",
)
@click.option("--energies", default=None, help="Fix the energies (eV, comma-separated, >= 3).")
@click.option("--split", default=None, help="Fix the relative photons per energy, e.g. 1,2,2.")
@click.option("--angles", type=click.IntRange(min=8), default=None, help="Fix the projections.")
@click.option(
    "--lithiated", type=click.Path(path_type=Path), default=None, help="Reference spectrum."
)
@click.option(
    "--delithiated", type=click.Path(path_type=Path), default=None, help="Reference spectrum."
)
@click.option(
    "--include-normalization",
    is_flag=True,
    help="Count the spread over reference-normalization conventions in the constraint.",
)
@click.option("--naive", is_flag=True, help="Also show the naive plan (E0-50, edge, E0+50 eV).")
@click.option(
    "--scenario-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the plan as a twin scenario.",
)
@click.option("--verify", is_flag=True, help="Run the twin and the pipeline with the plan.")
@click.option(
    "--verify-offset-ev", type=float, default=0.0, help="True energy offset in the --verify run."
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    target_sigma: float,
    naive: bool,
    scenario_out: Path | None,
    verify: bool,
    verify_offset_ev: float,
    as_json: bool,
    **given: Any,
) -> None:
    """Choose energies, photons per energy and angles that reach a target error of w at the
    lowest dose to the NMC, counting noise and the systematic terms that depend on the choice
    (energy calibration, model bias, low counts; reference normalization on request).
    """
    from xtwin.plan.planner import make_plan

    kw = _plan_arguments(**given)
    energies, split = given["energies"], given["split"]
    the_plan = make_plan(
        target_sigma,
        energies_eV=tuple(_float_list(energies, "--energies")) if energies else None,
        split=tuple(_float_list(split, "--split")) if split else None,
        max_dose_gy=given["max_dose_gy"],
        **kw,
    )
    plans = {"plan": the_plan}
    if naive:
        plans["naive"] = make_plan(target_sigma, naive=True, **kw)
    out: dict[str, Any] = {k: p.to_dict() for k, p in plans.items()}
    if scenario_out is not None:
        from xtwin._files import check_can_write, write_text_atomic
        from xtwin.validate.planning import plan_scenario

        check_can_write(scenario_out, force=True)
        write_text_atomic(scenario_out, plan_scenario(the_plan).to_toml())
    if verify:
        from xtwin.validate.planning import verify_plan

        click.echo("verifying on the twin (simulate, process, compare) ...", err=True)
        for k, p in plans.items():
            out[k]["verify"] = verify_plan(p, energy_offset_eV=verify_offset_ev)
            out[k]["verify"].pop("scenario")
    if as_json:
        click.echo(json.dumps(out if naive else out["plan"], indent=2))
        return
    _print_plans(plans, out)
    if scenario_out is not None:
        click.echo(f"scenario written to {scenario_out} (xtwin simulate {scenario_out} -o DIR)")


def _plan_arguments(**g: Any) -> dict[str, Any]:
    """The planner's keyword arguments from the command's options (SI units)."""
    from xtwin.plan.noise import SampleModel

    lithiated, delithiated = g["lithiated"], g["delithiated"]
    refs = None
    if (lithiated is None) != (delithiated is None):
        raise XtwinInputError("give both --lithiated and --delithiated, or neither")
    if lithiated is not None and delithiated is not None:
        from xtwin.physics.spectra import read_spectrum

        refs = (read_spectrum(lithiated), read_spectrum(delithiated))
    sample = SampleModel(
        diameter_m=g["diameter_um"] * 1e-6,
        lithiation=g["lithiation"],
        electrolyte_path_m=g["electrolyte_um"] * 1e-6,
        ni_chemistry=g["ni_chemistry"],
    )
    return dict(
        level=g["level"],
        sample=sample,
        pixel_size_m=g["pixel_size_nm"] * 1e-9,
        particle_diameter_m=g["particle_diameter_um"] * 1e-6,
        energy_uncertainty_eV=g["energy_uncertainty_ev"],
        quick_xanes_energies=g["quick_xanes"],
        n_angles=g["angles"],
        references=refs,
        include_normalization=g["include_normalization"],
    )


def _print_plans(plans: dict[str, Any], out: dict[str, Any]) -> None:
    for k, p in plans.items():
        click.echo(_plan_table(k, p))
        if "verify" in out[k]:
            m = out[k]["verify"]["measured"]
            meas = m["particle_rmse"] if p.level == "particle" else m["interior_voxel_rmse"]
            click.echo(
                f"  verified on the twin: measured {p.level} RMSE {meas:.4f} vs predicted "
                f"{p.predicted_total:.4f} (interior voxel RMSE {m['interior_voxel_rmse']:.4f})"
            )


def _plan_table(name: str, p) -> str:
    lines = [
        f"{name}: {p.level} target {p.target_sigma:g} -> predicted {p.predicted_total:.4f} "
        f"(noise {p.predicted_sigma:.4f}, systematic {p.predicted_systematic:.4f}; "
        f"dominant: {p.dominant})",
        "  energy (eV)   photons/pixel/projection",
    ]
    lines += [f"  {e:10.2f}   {n:12.1f}" for e, n in zip(p.energies_eV, p.photons_per_pixel)]
    cal = p.calibration
    quick = (
        f" (of which {cal['quick_xanes_dose_gy']:.3g} Gy the quick XANES)"
        if cal.get("quick_xanes_energies")
        else ""
    )
    lines.append(
        f"  {p.n_angles} angles; dose {p.dose_gy:.3g} Gy to the NMC{quick}, "
        f"{p.dose_gy_electrolyte:.3g} Gy to the electrolyte"
    )
    if cal:
        lines.append(f"  energy calibration: {cal['assumption']}")
    lines.append(
        "  systematic terms: " + ", ".join(f"{k} {v:.4f}" for k, v in p.systematic_terms.items())
    )
    lines += [f"  note: {n}" for n in p.notes]
    return "\n".join(lines)


@cli.group(invoke_without_command=True)
@click.option(
    "--energies",
    default="8320,8347,8400",
    show_default=True,
    help="Comma-separated energies in eV.",
)
@click.option(
    "--lithiation",
    default="0,1",
    show_default=True,
    help="Comma-separated lithiation fractions w for NMC532.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a list of records as JSON.")
@click.pass_context
def physics(ctx: click.Context, energies: str, lithiation: str, as_json: bool) -> None:
    """Attenuation of the cell's materials at given energies, for planning an experiment.

    Per energy and material: mu/rho (cm2/g), mu (1/um), attenuation length (um) and
    mu_en/rho (cm2/g). NMC532 near the Ni K edge uses the XANES model at each lithiation.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"energies": energies}
        return
    from xtwin.physics.tables import attenuation_records, format_records

    recs = attenuation_records(
        _float_list(energies, "--energies"), _float_list(lithiation, "--lithiation")
    )
    click.echo(json.dumps(recs, indent=2) if as_json else format_records(recs))


@physics.command("spectra")
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default="spectra.png",
    show_default=True,
    help="Output PNG.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.pass_context
def physics_spectra(ctx: click.Context, out: Path, force: bool) -> None:
    """Plot the end-member spectra with the chosen energies marked (PNG)."""
    from xtwin._files import check_can_write
    from xtwin.physics.tables import plot_end_members

    check_can_write(out, force=force)
    plot_end_members(_float_list(ctx.obj["energies"], "--energies"), out)
    click.echo(str(out))


@physics.command("dose")
@click.option(
    "--photons",
    type=float,
    default=20000.0,
    show_default=True,
    help="Photons per pixel per projection (flat-field level).",
)
@click.option("--angles", type=int, default=121, show_default=True, help="Projections per energy.")
@click.option(
    "--pixel-size-nm",
    type=float,
    default=400.0,
    show_default=True,
    help="Pixel size at the sample, nm.",
)
@click.option(
    "--lithiation",
    type=float,
    default=0.5,
    show_default=True,
    help="Lithiation fraction w of the NMC532.",
)
@click.option(
    "--sample-thickness-um",
    type=float,
    default=20.0,
    show_default=True,
    help="Electrode thickness crossed by the beam, um.",
)
@click.option(
    "--window-um",
    type=float,
    default=0.0,
    show_default=True,
    help="Thickness of each of two Kapton cell windows, um.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def physics_dose(
    ctx: click.Context,
    photons: float,
    angles: int,
    pixel_size_nm: float,
    lithiation: float,
    sample_thickness_um: float,
    window_um: float,
    as_json: bool,
) -> None:
    """Dose (Gy) to NMC532 and electrolyte for a whole acquisition, and transmissions."""
    from xtwin.physics.tables import dose_records

    if photons <= 0 or angles <= 0 or pixel_size_nm <= 0:
        raise XtwinInputError("--photons, --angles and --pixel-size-nm must be positive")
    rec = dose_records(
        _float_list(ctx.obj["energies"], "--energies"),
        photons_per_pixel=photons,
        n_projections=angles,
        pixel_size_m=pixel_size_nm * 1e-9,
        lithiation=lithiation,
        sample_thickness_m=sample_thickness_um * 1e-6,
        window_thickness_m=window_um * 1e-6,
    )
    if as_json:
        click.echo(json.dumps(rec, indent=2))
        return
    click.echo(f"fluence per energy {rec['fluence_per_m2_per_energy']:.4g} photons/m2")
    click.echo(
        f"{'E (eV)':>8s} {'dose NMC532 (Gy)':>17s} {'dose electrolyte (Gy)':>22s} "
        f"{'T sample':>9s} {'T windows':>10s}"
    )
    for i, e in enumerate(rec["energy_eV"]):
        click.echo(
            f"{e:8.1f} {rec['dose_Gy']['NMC532'][i]:17.4g} "
            f"{rec['dose_Gy']['electrolyte'][i]:22.4g} "
            f"{rec['transmission_sample'][i]:9.3f} {rec['transmission_windows'][i]:10.3f}"
        )
    click.echo(
        f"total dose: NMC532 {rec['total_dose_Gy']['NMC532']:.4g} Gy, electrolyte "
        f"{rec['total_dose_Gy']['electrolyte']:.4g} Gy"
    )
