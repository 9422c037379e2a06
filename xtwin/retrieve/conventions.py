"""Common normalization conventions of reference spectra, and the spread of w they cause.

The same two measured reference spectra give different end-member shapes S(E) depending on how
they are normalized: where E0 is put, which ranges the pre- and post-edge lines are fitted
over, and with which order. The retrieval inherits the difference: an independent phantom
moved by 0.02-0.03 in w between Athena's defaults and a linear post-edge over 8420-8700 eV.
The pipeline therefore calibrates with each convention below and reports the spread of w
beside the noise (``/li/systematic``).

Conventions (ranges relative to E0 unless absolute):

``xtwin``
    The pipeline's default: E0 at the maximum of the derivative, pre-edge -150 to -25 eV,
    post-edge +150 to +600 eV (quadratic when it spans 200 eV).
``athena``
    Athena's defaults [1]: pre-edge -150 to -30 eV, post-edge +150 eV to the end, quadratic.
``linear-post``
    A linear post-edge over 8420-8700 eV (absolute), as many TXM-XANES scripts do.
``e0-half-jump``
    E0 at the half-jump energy instead of the derivative maximum, ranges as ``xtwin``.
``short-post``
    A linear post-edge over +50 to +150 eV, as for spectra that stop 150 eV above the edge.

References
----------
.. [1] B. Ravel and M. Newville, J. Synchrotron Rad. 12, 537-541 (2005).
"""

from __future__ import annotations

import numpy as np

from xtwin.physics.spectra import NormalizedSpectrum, Spectrum, normalize

#: Names of the conventions, the pipeline's first.
CONVENTIONS: tuple[str, ...] = ("xtwin", "athena", "linear-post", "e0-half-jump", "short-post")


def normalize_with(spectrum: Spectrum, convention: str) -> NormalizedSpectrum:
    """Normalize ``spectrum`` by one of :data:`CONVENTIONS`."""
    if convention == "xtwin":
        return normalize(spectrum)
    if convention == "athena":
        return normalize(
            spectrum, pre_edge_eV=(-150.0, -30.0), post_edge_eV=(150.0, 1e5), post_order=2
        )
    if convention == "linear-post":
        e0 = normalize(spectrum).e0_eV
        return normalize(spectrum, e0_eV=e0, post_edge_eV=(8420.0 - e0, 8700.0 - e0), post_order=1)
    if convention == "e0-half-jump":
        return normalize(spectrum, e0_eV=normalize(spectrum).e_half_jump_eV)
    if convention == "short-post":
        return normalize(spectrum, post_edge_eV=(50.0, 150.0), post_order=1)
    raise ValueError(f"unknown normalization convention {convention!r}; one of {CONVENTIONS}")


def convention_references(
    lithiated: Spectrum, delithiated: Spectrum
) -> dict[str, tuple[NormalizedSpectrum, NormalizedSpectrum]]:
    """Both references normalized by every convention that their energy range supports
    (a convention whose fit range the spectra do not reach is left out)."""
    out = {}
    for conv in CONVENTIONS:
        try:
            pair = (normalize_with(lithiated, conv), normalize_with(delithiated, conv))
        except Exception:  # noqa: BLE001 (a convention the data cannot support is skipped)
            continue
        if conv != "xtwin" and any(r.notes for r in pair):
            continue  # the convention's ranges are not covered: it would repeat a fallback
        if all(np.isfinite(r.edge_jump) for r in pair):
            out[conv] = pair
    return out
