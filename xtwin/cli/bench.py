"""Benchmarks measured side by side in one run on this machine."""

from __future__ import annotations

import json

import click

from xtwin.cli._app import cli


@cli.group()
def bench() -> None:
    """Benchmarks measured side by side in one run on this machine."""


@bench.command("recon")
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=512,
    show_default=True,
    help="Slice width in pixels.",
)
@click.option(
    "--angles",
    type=click.IntRange(min=8),
    default=720,
    show_default=True,
    help="Projections over 180 degrees.",
)
@click.option(
    "--slices",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Slices reconstructed (and timed) per method.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for every method (default: CPU count).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_recon_cmd(
    size: int, angles: int, slices: int, workers: int | None, as_json: bool
) -> None:
    """Reconstruction: xtwin's FBP against ASTRA CPU FBP, algotom FBP and scikit-image iradon
    (seconds and RMSE against the Shepp-Logan phantom)."""
    from xtwin.validate.bench import bench_recon

    res = bench_recon(size, angles, slices=slices, workers=workers)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    ref = res["methods"].get("xtwin fourier", {}).get("seconds")
    click.echo(
        f"{size}^2 x {angles} angles, {slices} slices, {res['workers']} threads ({res['machine']})"
    )
    click.echo(f"{'method':24s} {'seconds':>9s} {'x xtwin':>8s} {'RMSE':>10s} {'RMSE noisy':>11s}")
    for name, m in res["methods"].items():
        ratio = m["seconds"] / ref if ref else float("nan")
        noisy = f"{m['rmse_noisy']:11.3e}" if m["rmse_noisy"] is not None else f"{'-':>11s}"
        click.echo(f"{name:24s} {m['seconds']:9.3f} {ratio:8.2f} {m['rmse']:10.3e} {noisy}")
