"""Commands on files: convert, export, info."""

from __future__ import annotations

from pathlib import Path

import click

from xtwin.cli._app import cli


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output scan file (Data Exchange HDF5); several acquisitions: OUT_t000_<group>.h5, ...",
)
@click.option("--flats", default=None, help="Glob of the flat-field frames (Xradia), e.g. '*bg*'.")
@click.option("--darks", default=None, help="Glob of the dark frames (Xradia).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def convert(
    files: tuple[Path, ...], out: Path, flats: str | None, darks: str | None, force: bool
) -> None:
    """Convert beamline files to scan file(s) for `process`.

    FILES are Xradia .xrm/.txrm frames (sample images; flat-field references named *_ref_*,
    ref_*, bkg* or given with --flats; darks), or one .toml/.json sidecar describing TIFF
    stacks, or NSLS-II FXI / Data Exchange HDF5 files. Xradia frames are grouped by name and
    exposure: each state of charge or time point becomes its own scan, never summed with
    another. Repeated images are summed and measure the detector's counts per photon; flats
    are scaled to the sample exposure; an energy missing from the file is read from its name.
    """
    import numpy as np

    from xtwin.io.convert import convert_files

    for path, scan in convert_files(list(files), out, force=force, flats=flats, darks=darks):
        n_e, n_a, n_r, n_c = scan.shape
        group = scan.metadata.get("group")
        energies = (
            f"{n_e} energies {scan.energy_eV.tolist()} eV"
            if np.all(np.isfinite(scan.energy_eV))
            else "1 energy (not recorded)"
        )
        pixels = (
            "pixels (size not recorded)"
            if scan.pixel_size_assumed
            else f"pixels of {scan.pixel_size_m * 1e9:.1f} nm"
        )
        click.echo(
            f"{path}: {energies}, {n_a} angle(s), {n_r} x {n_c} {pixels}, "
            f"{0 if scan.flats is None else scan.flats.shape[1]} flats per energy, "
            f"counts per photon {scan.counts_per_photon:.3f}"
            + (f", group {group!r}" if group else "")
            + (f", t = {scan.metadata['time_s']:.0f} s" if "time_s" in scan.metadata else "")
        )


@cli.command("export")
@click.argument("limap", type=click.Path(path_type=Path))
@click.option(
    "--tiff",
    "tiff_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for float32 TIFF stacks (ImageJ, Avizo, Dragonfly).",
)
def export(limap: Path, tiff_dir: Path) -> None:
    """Write a Li map's volumes as float32 TIFF stacks with the pixel size in the tags."""
    from xtwin.io.tiff import export_tiff

    paths = export_tiff(limap, tiff_dir)
    click.echo(f"{len(paths)} TIFF stacks in {tiff_dir}: " + ", ".join(p.name for p in paths))


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
def info(path: Path) -> None:
    """Say what a file holds (scan, truth, Li-map, reference spectrum, any HDF5)."""
    from xtwin.inspect import describe

    click.echo(describe(path))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def view(files: tuple[Path, ...]) -> None:
    """Open files in napari: Li maps (lithiation with fixed 0-1 limits, sigma, systematic, Ni
    mask, mu per energy, /edge maps), truth files, scan files (energy and angle sliders) and
    several Li maps of one shape as an operando series (a time axis), every layer in um, with
    the particles widget. Needs the viewer extra: pip install "xtwin[viewer]"."""
    import napari

    from xtwin.viewer import open_viewer

    open_viewer([str(f) for f in files])
    napari.run()
