"""The click group, progress bars, and the entry point that maps errors to exit codes.

Exit codes: 0 success; 2 bad input or usage (a message naming the problem and the fix, no
traceback); 1 internal error; 130 SIGINT; 143 SIGTERM. No command leaves a half-written
output behind or overwrites an existing output without ``--force``.
"""

from __future__ import annotations

import sys

import click

from xtwin.errors import XtwinInputError


def bar(total: int, desc: str):
    """A progress bar on stderr; in a batch job (no terminal) it reports every 30 s as plain
    lines."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit="step",
        file=sys.stderr,
        leave=True,
        mininterval=0.1 if tty else 30.0,
        ascii=not tty,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xtwin")
def cli() -> None:
    """xtwin: digital twin and shared pipeline for operando XANES-TXM nano-CT of NMC532.

    \b
    xtwin demo                     simulate, process and compare the default scenario
    xtwin simulate SCENARIO -o DIR write scan.h5, truth.h5 and reference spectra
    xtwin process SCAN ... -o OUT  the shared pipeline: Li map from a scan file
    xtwin compare OUT TRUTH        error metrics against the truth
    xtwin info FILE                what a file holds
    xtwin convert FILES -o SCAN    Xradia, TIFF+sidecar or FXI files to scan file(s)
    xtwin export MAP --tiff DIR    a Li map as float32 TIFF stacks
    xtwin analyze MAP -o DIR       particles, profiles, hot spots of a Li map or truth
    xtwin report MAP [TRUTH] -o DIR   figures and a self-contained HTML page
    xtwin validate CAMPAIGN -o DIR sweeps of the twin through the pipeline, on dask
    xtwin plan --target-sigma 0.02 energies, photons and angles at the least dose
    xtwin physics --energies ...   attenuation and dose numbers for planning
    xtwin microstructure SCENARIO -o DIR   an electrode microstructure and its metrics
    xtwin metrics FILE             microstructure metrics of any volume
    xtwin bench recon              reconstruction speed and accuracy against the peers
    """


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that files are closed on the way out."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def _interrupted(terminated: bool) -> int:
    if terminated:
        click.echo("terminated (SIGTERM); no finished output was replaced", err=True)
        return 143
    click.echo("interrupted (SIGINT); no finished output was replaced", err=True)
    return 130


#: Modules of the optional extras, and the extra that installs each.
OPTIONAL_MODULES = {
    "pybamm": "twin",
    "porespy": "twin",
    "openpnm": "twin",
    "pyamg": "twin",
    "edt": "twin",
    "astra": "astra",
    "napari": "viewer",
    "qtpy": "viewer",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes (0 ok, 2 user error, 1 bug,
    130 interrupted by SIGINT, 143 terminated by SIGTERM)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        from xtwin._signals import on_sigint

        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, on_sigint)
    try:
        cli.main(args=argv, prog_name="xtwin", standalone_mode=False)
    except XtwinInputError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort as exc:
        return _interrupted(isinstance(exc.__cause__, _Terminated))
    except click.ClickException as exc:
        exc.show()
        return 2
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None:
            return _bug()
        click.echo(
            f"error: this command needs {exc.name}, from the optional extra [{extra}] (the "
            f'processing-only install leaves it out); install it with: pip install "xtwin[{extra}]"'
            f' (from a checkout: pip install ".[{extra}]")',
            err=True,
        )
        return 2
    except KeyboardInterrupt as exc:
        return _interrupted(isinstance(exc, _Terminated))
    except Exception:
        return _bug()
    return 0


def _bug() -> int:
    """The traceback of an unexpected error, and exit code 1."""
    import traceback

    traceback.print_exc()
    click.echo(
        "internal error: this is a bug in xtwin; please report it with the traceback above",
        err=True,
    )
    return 1
