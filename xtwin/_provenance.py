"""Versions of the packages a result depends on, for provenance."""

from __future__ import annotations


def package_versions(*names: str) -> dict[str, str]:
    """Installed version of each distribution in ``names`` ("absent" when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out
