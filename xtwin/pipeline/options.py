"""What to compute and how to run it: two typed records.

:class:`ProcessOptions` holds every setting that changes the Li map; its :meth:`key` (which
decides whether a partial file may be resumed) is derived from its fields, so a new
result-changing field enters the key without anyone editing a list. :class:`RunOptions` holds
what only changes how fast and in how much memory the same map is made. The command line is
generated from the fields' metadata (flag, help, choices from the registries of methods and
conventions), so choices are not spelled out twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xtwin.errors import XtwinInputError

if TYPE_CHECKING:
    from xtwin.io.scan import ScanHeader

#: Names the reconstruction method may also be given by, resolved once (here).
METHOD_ALIASES = {"fast": "fourier"}

#: Per-projection alignment modes.
ALIGN_MODES = ("auto", "on", "off")

#: What to do with alignment shifts the acquisition software recorded (Xradia).
RECORDED_SHIFT_MODES = ("auto", "use", "ignore")

#: Magnification-with-energy modes (:mod:`xtwin.pipeline._estimate.registration`).
MAGNIFICATION_MODES = ("auto", "fit", "inverse-energy", "off")


def _methods() -> tuple[str, ...]:
    from xtwin.recon.fbp import METHODS

    return METHODS


def _conventions() -> tuple[str, ...]:
    from xtwin.retrieve.conventions import CONVENTIONS

    return CONVENTIONS


def resolve_method(name: str) -> str:
    """The reconstruction method a name (or alias, e.g. ``fast``) stands for.

    Raises
    ------
    XtwinInputError
        An unknown name, with the choices.
    """
    method = METHOD_ALIASES.get(name, name)
    if method not in _methods():
        choices = ", ".join((*_methods(), *METHOD_ALIASES))
        raise XtwinInputError(f"unknown reconstruction method {name!r}; choose one of {choices}")
    return method


def _meta(flag: str, help: str, **more: Any) -> dict[str, Any]:
    return {"flag": flag, "help": help, **more}


@dataclass(frozen=True)
class ProcessOptions:
    """How to process a scan: every field changes the result (and the resume key).

    Attributes
    ----------
    center_offset_px : float or "auto"
        Rotation axis minus detector centre, pixels; ``"auto"`` (default) finds it from the
        data and records it.
    method : str
        Reconstruction backend (:data:`xtwin.recon.fbp.METHODS`; ``fast`` is ``fourier``).
    min_jump_snr, min_jump_fraction : float
        Ni masking thresholds (:func:`xtwin.retrieve.three_energy.apply_mask`).
    register : bool
        Register the energies to each other first.
    magnification : str
        A magnification change between energies (zone-plate optics): ``auto`` (default)
        fits one scale per energy on features that do not change across the edge and
        applies it when it moves the detector edge by 0.25 px or more and is consistent
        (with the pixel-proportional-to-E law as a prior); ``fit`` applies the free fit;
        ``inverse-energy`` applies the law of a fixed-detector zone-plate microscope
        (object pixel proportional to E) without fitting; ``off`` does nothing.
    rows : (int, int), optional
        Process only detector rows ``[start, stop)``.
    allow_swapped_references : bool
        Accept a "lithiated" reference whose edge lies above the "delithiated" one.
    reference_convention : str
        How the reference spectra are normalized (:data:`xtwin.retrieve.conventions.CONVENTIONS`;
        default ``xtwin``); the others give ``/li/systematic``.
    align_projections : str
        Per-projection alignment for the stage's run-out and jitter: ``auto`` (default)
        applies the offsets when their rms reaches 0.2 px, ``on`` always, ``off`` skips the
        estimate.
    xradia_shifts : str
        Per-projection alignment shifts recorded by the acquisition software (Xradia
        ``Alignment/X-Shifts``, ``Y-Shifts``, kept by ``convert``): ``auto`` (default: the
        starting point and a candidate of the run-out's projection matching, kept where they
        make the sinograms the more self-consistent), ``use`` (applied as they are instead of
        the estimate) or ``ignore``.
    ring_removal : bool
        Remove sinogram stripes (ring artefacts) before reconstruction; dead pixels are
        always filled.
    energy_calibration : str, optional
        A quick XANES of the same sample (8 or more energies across the edge, a few
        angles; any scan file) from which the offset between the scan's energy scale and
        the standards' is fitted, or ``scan`` to fit it on the scan's own projections (4
        or more energies) (:mod:`xtwin.retrieve.energy_scale`).
    energy_offset_eV : float, optional
        A known offset: true energy on the standards' scale = recorded energy + this.
    calibration_series : str, optional
        A CSV (``lithiation,path``, three or more rows) of spectra at known lithiations:
        lithiation on the piecewise-linear path through them (:mod:`xtwin.retrieve.path`);
        replaces the two references.
    """

    center_offset_px: float | str = field(
        default="auto",
        metadata=_meta(
            "--center-offset", "Rotation axis minus detector centre, in pixels, or 'auto'."
        ),
    )
    method: str = field(
        default="fourier",
        metadata=_meta(
            "--recon",
            "Reconstruction backend (gridrec needs tomopy; fast = fourier).",
            choices=lambda: (*_methods(), *METHOD_ALIASES),
        ),
    )
    min_jump_snr: float = field(
        default=3.0, metadata=_meta("--min-jump-snr", "Ni mask: smallest J / sigma_J.")
    )
    min_jump_fraction: float = field(
        default=0.2,
        metadata=_meta("--min-jump-fraction", "Ni mask: smallest J over the dense-NMC J."),
    )
    register: bool = field(
        default=True, metadata=_meta("--register", "Register the energies to each other.")
    )
    magnification: str = field(
        default="auto",
        metadata=_meta(
            "--magnification",
            "Magnification change between energies: fit and apply when consistent (auto), "
            "always apply the fit (fit), the pixel-proportional-to-E law (inverse-energy), off.",
            choices=lambda: MAGNIFICATION_MODES,
        ),
    )
    rows: tuple[int, int] | None = field(
        default=None, metadata=_meta("--rows", "Process only detector rows START:STOP.")
    )
    allow_swapped_references: bool = field(
        default=False,
        metadata=_meta(
            "--allow-swapped-references",
            "Accept a lithiated reference whose edge lies above the delithiated one.",
        ),
    )
    reference_convention: str = field(
        default="xtwin",
        metadata=_meta(
            "--reference-convention",
            "How the reference spectra are normalized (the others give /li/systematic).",
            choices=_conventions,
        ),
    )
    align_projections: str = field(
        default="auto",
        metadata=_meta(
            "--align-projections",
            "Per-projection alignment for stage run-out and jitter (auto: when >= 0.2 px rms).",
            choices=lambda: ALIGN_MODES,
        ),
    )
    xradia_shifts: str = field(
        default="auto",
        metadata=_meta(
            "--xradia-shifts",
            "Alignment shifts the microscope recorded per projection: the run-out estimate's "
            "starting point and candidate (auto), applied as they are (use), or ignored.",
            choices=lambda: RECORDED_SHIFT_MODES,
        ),
    )
    ring_removal: bool = field(
        default=False,
        metadata=_meta("--ring-removal", "Remove sinogram stripes (ring artefacts) first."),
    )
    energy_calibration: str | None = field(
        default=None,
        metadata=_meta(
            "--energy-calibration",
            "Fit the energy offset of the standards from a quick XANES file of this sample "
            "(8+ energies across the edge), or from the scan itself ('scan', 4+ energies).",
        ),
    )
    energy_offset_eV: float | None = field(
        default=None,
        metadata=_meta(
            "--energy-offset-ev",
            "Known offset, eV: true energy on the standards' scale = recorded + this.",
        ),
    )
    calibration_series: str | None = field(
        default=None,
        metadata=_meta(
            "--calibration-series",
            "CSV 'lithiation,path' of 3+ spectra at known lithiation: w on the measured path "
            "(instead of --lithiated/--delithiated).",
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", resolve_method(self.method))
        if self.reference_convention not in _conventions():
            raise XtwinInputError(
                f"unknown reference convention {self.reference_convention!r}; choose one of "
                f"{', '.join(_conventions())}"
            )
        c = self.center_offset_px
        if isinstance(c, str) and c != "auto":
            raise XtwinInputError(f"center offset {c!r} is neither a number of pixels nor 'auto'")
        if not isinstance(c, str) and not math.isfinite(c):
            raise XtwinInputError(f"center offset {c} is not a finite number of pixels")
        if self.min_jump_snr < 0 or not 0 <= self.min_jump_fraction < 1:
            raise XtwinInputError("min_jump_snr must be >= 0 and min_jump_fraction in [0, 1)")
        r = self.rows
        if r is not None and (len(r) != 2 or r[0] < 0 or r[1] <= r[0]):
            raise XtwinInputError(f"rows {r} is not a range START:STOP with 0 <= START < STOP")
        if r is not None:
            object.__setattr__(self, "rows", (int(r[0]), int(r[1])))
        if self.magnification not in MAGNIFICATION_MODES:
            raise XtwinInputError(
                f"magnification {self.magnification!r} must be one of "
                f"{', '.join(MAGNIFICATION_MODES)}"
            )
        if self.energy_calibration is not None and self.energy_offset_eV is not None:
            raise XtwinInputError(
                "give either --energy-calibration (fit the offset) or --energy-offset-ev (a "
                "known offset), not both"
            )
        off = self.energy_offset_eV
        if off is not None and (not math.isfinite(off) or abs(off) > 20):
            raise XtwinInputError(
                f"energy offset {off} eV is not a finite offset of at most 20 eV; a larger "
                "one means the energies or the standards belong to another edge"
            )
        if self.energy_calibration is not None:
            object.__setattr__(self, "energy_calibration", str(self.energy_calibration))
        if self.calibration_series is not None:
            object.__setattr__(self, "calibration_series", str(self.calibration_series))
        if self.align_projections not in ALIGN_MODES:
            raise XtwinInputError(
                f"align_projections {self.align_projections!r} must be auto, on or off"
            )

    def key(self) -> dict[str, Any]:
        """Every field, JSON-ready: what decides whether a partial file may be resumed."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def searches_axis(self, header: ScanHeader) -> bool:
        """Whether the planning finds the rotation axis of a scan from its data."""
        return self.center_offset_px == "auto" and header.is_tomography

    def aligns_projections(self, header: ScanHeader) -> bool:
        """Whether the planning estimates a scan's run-out from its data (projection matching
        when its quick look is not conclusive)."""
        return (
            header.is_tomography
            and self.align_projections != "off"
            and self.xradia_shifts != "use"
            and header.shape[1] >= 16
        )


@dataclass(frozen=True)
class RunOptions:
    """How to run: the same map, bit for bit, whatever these are.

    Attributes
    ----------
    memory_limit_bytes : int, optional
        Cap on the predicted peak memory (default: half the available memory).
    workers : int, optional
        Threads (or dask workers) reconstructing at once (default: the CPU count).
    scheduler : str, optional
        ``"local"`` for a dask.distributed LocalCluster, or a scheduler address
        (``tcp://host:8786``); default: threads in this process.
    block_rows : int, optional
        At most this many detector rows per block (smaller than the memory plan allows).
    """

    memory_limit_bytes: int | None = field(
        default=None,
        metadata=_meta(
            "--memory-limit", "Cap on peak memory, e.g. 2GB (default: half the available)."
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=_meta(
            "--workers", "Threads (or dask workers) reconstructing at once (default: CPU count)."
        ),
    )
    scheduler: str | None = field(
        default=None,
        metadata=_meta(
            "--scheduler", "Run blocks on dask.distributed: 'local' or a scheduler address."
        ),
    )
    block_rows: int | None = field(
        default=None, metadata=_meta("--block-rows", "At most this many detector rows per block.")
    )

    def __post_init__(self) -> None:
        if self.block_rows is not None and self.block_rows < 1:
            raise XtwinInputError("block_rows must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise XtwinInputError("workers must be at least 1")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise XtwinInputError("memory_limit_bytes must be positive")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def split_options(**kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments split into ProcessOptions' and RunOptions' fields.

    Raises
    ------
    XtwinInputError
        A name that is neither.
    """
    sci = {f.name for f in dataclasses.fields(ProcessOptions)}
    run = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(kwargs) - sci - run)
    if unknown:
        raise XtwinInputError(
            f"unknown processing option(s) {unknown}; choose from {sorted(sci | run)}"
        )
    return (
        {k: v for k, v in kwargs.items() if k in sci},
        {k: v for k, v in kwargs.items() if k in run},
    )
