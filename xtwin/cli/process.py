"""``xtwin process``: its options generated from the pipeline's option records, its progress
bars an adapter of the pipeline's typed events."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from xtwin.cli._app import bar, cli
from xtwin.errors import XtwinInputError
from xtwin.pipeline.options import ProcessOptions, RunOptions


def _rows(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise XtwinInputError(f"--rows {text!r} is not START:STOP (e.g. 100:164)") from None
    return a, b


def _center(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise XtwinInputError(
            f"--center-offset {text!r} is neither a number of pixels nor 'auto'"
        ) from None


def _bytes(text: str | None) -> int | None:
    from xtwin.memory import parse_bytes

    return parse_bytes(text) if text else None


#: How a field's text on the command line becomes its value (fields not named: click's type).
_PARSE = {"center_offset_px": _center, "rows": _rows, "memory_limit_bytes": _bytes}


class _RegistryChoice(click.Choice):
    """A choice among a registry's names, read when the option is first used (help or
    parsing), so that ``xtwin --help`` does not import the registries' modules."""

    def __init__(self, registry) -> None:
        self._registry = registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._registry())


def _click_option(f: dataclasses.Field) -> Any:
    """A click option made from a field of ProcessOptions or RunOptions: its flag and help
    from the field's metadata, choices from the registries, the default from the field."""
    meta = f.metadata
    flag, dest = meta["flag"], f.name
    kw: dict[str, Any] = {"help": meta["help"]}
    if f.type in ("bool", bool):
        if f.default:  # on by default: a --no- form turns it off
            name = flag[2:]
            return click.option(f"{flag}/--no-{name}", dest, default=True, show_default=True, **kw)
        return click.option(flag, dest, is_flag=True, **kw)
    if "choices" in meta:
        kw["type"] = _RegistryChoice(meta["choices"])
    elif f.name in _PARSE:
        kw["type"] = str
    elif "int" in str(f.type):
        kw["type"] = click.IntRange(min=1)
    elif "float" in str(f.type):
        kw["type"] = float
    default = f.default
    show = default is not None
    return click.option(flag, dest, default=default, show_default=show, **kw)


def _options_from(record: type, values: dict[str, Any]):
    """An option record from the command's values, parsed where the field needs it."""
    names = [f.name for f in dataclasses.fields(record)]
    return record(
        **{
            n: (_PARSE[n](values[n]) if n in _PARSE and values[n] is not None else values[n])
            for n in names
        }
    )


def _with_record_options(fn):
    for record in (RunOptions, ProcessOptions):
        for f in reversed(dataclasses.fields(record)):
            fn = _click_option(f)(fn)
    return fn


class _Progress:
    """The pipeline's events as a progress bar and the lines a user reads on the terminal."""

    def __init__(self, out: Path) -> None:
        self.bar: Any = None
        self.count = 1  # time points
        self.kept = 0  # time points kept before the first bar
        self.current = out  # the Li map being made

    def __call__(self, event) -> None:
        from xtwin.pipeline import Planned, RowsDone, TimePoint

        if isinstance(event, Planned):
            self._planned(event)
        elif isinstance(event, RowsDone) and self.bar is not None:
            self.bar.update(event.n)
        elif isinstance(event, TimePoint):
            self.count, self.current = event.count, event.limap
            if event.kept:
                self.kept += 1
                if self.bar is not None:
                    self.bar.update(self.bar.total // self.count)
            if event.kept is not None:
                click.echo(
                    f"{event.limap}: time point {event.index} from {event.scan}"
                    + (" (kept)" if event.kept else "")
                )

    def _planned(self, event) -> None:
        from xtwin.pipeline import partial_path

        if event.resumed_rows:
            click.echo(
                f"resuming from {partial_path(self.current)}: {event.resumed_rows} of "
                f"{event.n_rows} rows done",
                err=True,
            )
        how = "found from the data" if event.center_found else "given with --center-offset"
        axis = (
            f"rotation axis: {event.center_offset_px:+.2f} px from the detector centre ({how})"
            if event.tomography
            else "2D images (one angle): no rotation axis"
        )
        click.echo(
            f"{axis}; blocks of {event.rows_per_block} rows, predicted peak memory "
            f"{event.predicted_peak_bytes / 2**30:.2f} GiB",
            err=True,
        )
        for line in event.notices:
            click.echo(line, err=True)
        if self.bar is None:  # opens with the first plan (none for a run refused up front)
            self.bar = bar(event.n_rows * self.count, "series" if self.count > 1 else "process")
            self.bar.update(event.n_rows * self.kept)

    def interrupted(self) -> None:
        from xtwin.pipeline import partial_path

        if not partial_path(self.current).exists():
            return
        kept = "finished time points are kept; " if self.count > 1 else ""
        click.echo(
            f"interrupted: {kept}the finished rows of {self.current.name} are kept in "
            f"{partial_path(self.current)}; run the same command again to resume",
            err=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@cli.command()
@click.argument("scans", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--lithiated",
    default=None,
    type=click.Path(path_type=Path),
    help="Reference spectrum of the lithiated (discharged) end member "
    "(needed for 3 or more energies).",
)
@click.option(
    "--delithiated",
    default=None,
    type=click.Path(path_type=Path),
    help="Reference spectrum of the delithiated (charged) end member "
    "(needed for 3 or more energies).",
)
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output Li-map file (HDF5)."
)
@_with_record_options
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def process(
    scans: tuple[Path, ...],
    lithiated: Path | None,
    delithiated: Path | None,
    out: Path,
    force: bool,
    **values: Any,
) -> None:
    """The shared pipeline: normalize, register, reconstruct each energy, retrieve lithiation.

    The number of energies sets what comes out: two give the Ni edge jump and a Ni mask
    (no lithiation; the output names the third energy that would give it), three the
    closed-form lithiation, four or more (XANES stacks) a weighted fit of the two end members
    per voxel plus edge-position and white-line maps.

    SCAN is a Data Exchange HDF5 file with all energies, or several files with one energy
    each of the same acquisition, or the files of an operando series (several files with
    several energies each): then one Li map per time point, OUT_t000.h5, OUT_t001.h5, ...
    in time order. The scan is streamed in blocks of detector rows within --memory-limit;
    the Li map is built in OUT.h5.partial, so an interrupted run (even killed) resumes where
    it stopped when the same command is run again.
    """
    from xtwin.pipeline import process as run_pipeline

    options = _options_from(ProcessOptions, values)
    run = _options_from(RunOptions, values)
    progress = _Progress(out)
    try:
        made = run_pipeline(
            list(scans),
            lithiated,
            delithiated,
            out,
            options=options,
            run=run,
            force=force,
            on_event=progress,
        )
    except KeyboardInterrupt:
        progress.interrupted()
        raise
    finally:
        progress.close()
    if made == [out]:
        _summary(out)


def _summary(out: Path) -> None:
    import h5py

    from xtwin.io.limap import is_attenuation_map, read_limap_summary, read_mu_summary

    with h5py.File(out, "r") as f:
        attenuation = is_attenuation_map(f)
    if attenuation:
        mu, mu_sig, units = read_mu_summary(out)
        click.echo(
            f"{out}: attenuation mu in /recon/mu ({units}), median {mu:.4g} +- {mu_sig:.2g}; "
            "no lithiation from one energy"
        )
        return
    n, med, med_sig = read_limap_summary(out)
    if med == med:  # not NaN
        click.echo(
            f"{out}: {n} voxels with Ni; median lithiation {med:.3f}, median sigma {med_sig:.3f}"
        )
    else:
        click.echo(
            f"{out}: {n} voxels with Ni; edge-jump map in /li/edge_jump_per_m (no lithiation "
            "from two energies: see the provenance notes for the third energy to add)"
        )
