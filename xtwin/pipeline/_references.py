"""The reference spectra, read once: the calibration, the calibrations under the other
normalization conventions (for ``/li/systematic``), what the number of energies allows, and
their provenance."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from xtwin._files import sha256_of
from xtwin.errors import XtwinInputError
from xtwin.physics.spectra import NormalizedSpectrum, Spectrum, normalize, read_spectrum
from xtwin.retrieve.path import CalibrationSeries
from xtwin.retrieve.three_energy import Calibration, calibrate


@dataclass(frozen=True)
class References:
    """Both end members' spectra (or none, for a two-energy scan), read once."""

    paths: tuple[Path, Path] | None
    raw: tuple[Spectrum, Spectrum] | None
    normalized: tuple[NormalizedSpectrum, NormalizedSpectrum] | tuple[None, None]
    convention: str
    series: CalibrationSeries | None = None
    series_normalized: tuple[NormalizedSpectrum, ...] = ()
    extra_notes: tuple[str, ...] = ()

    @property
    def standards(self) -> tuple[NormalizedSpectrum, ...]:
        """Every normalized spectrum: the series (ascending lithiation) or both end members."""
        if self.series is not None:
            return self.series_normalized
        return tuple(s for s in self.normalized if s is not None)

    def calibrate(
        self,
        energy_eV: np.ndarray,
        allow_swapped: bool,
        energy_offset_eV: float = 0.0,
        broadening_eV: float = 0.0,
    ) -> Calibration:
        """The retrieval's calibration at the scan's energies (the standards read at
        ``energy_eV + energy_offset_eV``, broadened by ``broadening_eV`` (sigma) where the
        scan's bandwidth is wider)."""
        ref_l, ref_d = (_broadened(r, broadening_eV) for r in self.normalized)
        series = None
        if self.series is not None:
            series = (
                self.series.lithiation,
                tuple(_broadened(r, broadening_eV) for r in self.series_normalized),
            )
        return calibrate(
            energy_eV,
            ref_l,
            ref_d,
            allow_swapped=allow_swapped,
            energy_offset_eV=energy_offset_eV,
            series=series,
        )

    def alternatives(
        self,
        energy_eV: np.ndarray,
        allow_swapped: bool,
        energy_offset_eV: float = 0.0,
        broadening_eV: float = 0.0,
    ) -> tuple[tuple[tuple[str, Calibration], ...], dict[str, Any]]:
        """Calibrations under the other normalization conventions that the spectra support
        (:mod:`xtwin.retrieve.conventions`), and what was used and skipped."""
        if self.raw is None or np.size(energy_eV) < 3:
            return (), {}
        from xtwin.retrieve.conventions import CONVENTIONS, convention_references, normalize_with

        out = []
        for name, (ln, dn) in convention_references(*self.raw).items():
            if name == self.convention:
                continue
            try:
                series = None
                ln, dn = _broadened(ln, broadening_eV), _broadened(dn, broadening_eV)
                if self.series is not None:
                    series = (
                        self.series.lithiation,
                        tuple(
                            _broadened(normalize_with(r, name), broadening_eV)
                            for r in self.series.raw
                        ),
                    )
                    ln, dn = series[1][-1], series[1][0]
                cal = calibrate(
                    energy_eV,
                    ln,
                    dn,
                    allow_swapped=allow_swapped,
                    energy_offset_eV=energy_offset_eV,
                    series=series,
                )
                out.append((name, cal))
            except XtwinInputError:
                continue
        used = [n for n, _ in out]
        return tuple(out), {
            "used": [self.convention] + used,
            "skipped": [c for c in CONVENTIONS if c not in used and c != self.convention],
            "rule": "/li/systematic = half the range of w over the conventions used",
        }

    def notes(self) -> list[str]:
        """What the normalization of each spectrum assumed."""
        spectra = self.series_normalized or tuple(r for r in self.normalized if r is not None)
        return list(self.extra_notes) + [f"{ref.source}: {n}" for ref in spectra for n in ref.notes]

    @cached_property
    def provenance(self) -> dict[str, Any]:
        """Paths, SHA-256 and normalization of both spectra (empty without references);
        hashed once, for the resume key and the provenance both."""
        ref_l, ref_d = self.normalized
        if self.paths is None or ref_l is None or ref_d is None:
            return {}
        lith, delith = self.paths
        if self.series is not None:
            return {
                "calibration_series": {
                    "path": str(self.series.csv),
                    "sha256": sha256_of(self.series.csv),
                    "spectra": [
                        {
                            "lithiation": float(w),
                            "path": str(p),
                            "sha256": sha256_of(p),
                            **n.summary(),
                        }
                        for w, p, n in zip(
                            self.series.lithiation, self.series.paths, self.series_normalized
                        )
                    ],
                }
            }
        return {
            "lithiated_reference": {
                "path": str(lith),
                "sha256": sha256_of(lith),
                **ref_l.summary(),
            },
            "delithiated_reference": {
                "path": str(delith),
                "sha256": sha256_of(delith),
                **ref_d.summary(),
            },
        }


def read_references(
    lithiated: str | os.PathLike | None,
    delithiated: str | os.PathLike | None,
    convention: str = "xtwin",
    series: str | os.PathLike | None = None,
) -> References:
    """Read both reference spectra (or none, or a calibration series) and normalize them by
    ``convention``.

    Raises
    ------
    XtwinInputError
        Only one of the two given, a series with references too, or a spectrum that cannot
        be read or normalized.
    """
    if series is not None:  # its lowest and highest lithiation are the end members
        refs = _read_series(series, convention)
        if lithiated is not None or delithiated is not None:
            import dataclasses

            refs = dataclasses.replace(
                refs,
                extra_notes=(
                    "--lithiated and --delithiated were not used: the calibration series' "
                    "lowest and highest lithiation are the end members",
                ),
            )
        return refs
    if lithiated is None and delithiated is None:
        return References(None, None, (None, None), convention)
    if lithiated is None or delithiated is None:
        raise XtwinInputError("give both reference spectra (--lithiated and --delithiated) or none")
    raw = (read_spectrum(lithiated), read_spectrum(delithiated))
    if convention == "xtwin":
        norm = (normalize(raw[0]), normalize(raw[1]))
    else:
        from xtwin.retrieve.conventions import normalize_with

        norm = (normalize_with(raw[0], convention), normalize_with(raw[1], convention))
    return References((Path(lithiated), Path(delithiated)), raw, norm, convention)


def mode_notes(cal: Calibration, refs: References) -> list[str]:
    """What the number of energies allows, said in the provenance."""
    e = cal.energy_eV
    if cal.mode == "edge-jump":
        ref_l, ref_d = refs.normalized
        if ref_l is None or ref_d is None:
            from xtwin.physics.xanes import builtin_references

            ref_l, ref_d = builtin_references()
        from xtwin.retrieve.three_energy import best_edge_energy

        best, diff = best_edge_energy(ref_l, ref_d, float(e[0]), float(e[-1]))
        return [
            f"edge-jump mode: {e.size} energies ({e[0]:.1f}, {e[1]:.1f} eV) give the Ni edge "
            "jump J (and the post/pre attenuation ratio), not the lithiation: both end members "
            "have the same jump. A third energy at about "
            f"{best:.1f} eV, where the {ref_l.source or 'lithiated'} and "
            f"{ref_d.source or 'delithiated'} edges differ most (normalized difference "
            f"{diff:+.2f}), would give the lithiation"
        ]
    if cal.mode == "multi-energy":
        edge = (e >= cal.edge_eV - 10) & (e <= cal.edge_eV + 10)
        step = float(np.median(np.diff(e[edge]))) if edge.sum() > 1 else float("nan")
        return [
            f"multi-energy mode: {e.size} energies, weighted least-squares fit of the two end "
            "members with free background and edge jump per voxel (reduced chi-square in "
            f"/edge/fit_chi2); edge and white-line positions from {int(edge.sum())} energies "
            f"within 10 eV of the edge (median step {step:.2f} eV)"
        ]
    return []


def _broadened(spectrum, sigma_eV: float):
    """``spectrum`` (or None) broadened by ``sigma_eV`` (:func:`~xtwin.retrieve.energy_scale.
    broaden`)."""
    if spectrum is None or not sigma_eV:
        return spectrum
    from xtwin.retrieve.energy_scale import broaden

    return broaden(spectrum, sigma_eV)


def _normalized(raw: Spectrum, convention: str) -> NormalizedSpectrum:
    if convention == "xtwin":
        return normalize(raw)
    from xtwin.retrieve.conventions import normalize_with

    return normalize_with(raw, convention)


def _read_series(path: str | os.PathLike, convention: str) -> References:
    """References from a calibration series: its ends are the end members."""
    from xtwin.retrieve.path import read_calibration_series

    series = read_calibration_series(path)
    norm = tuple(_normalized(r, convention) for r in series.raw)
    return References(
        (series.paths[-1], series.paths[0]),
        (series.raw[-1], series.raw[0]),
        (norm[-1], norm[0]),
        convention,
        series,
        norm,
    )
