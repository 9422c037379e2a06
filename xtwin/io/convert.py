"""``xtwin convert``: beamline files of any supported kind -> scan files.

* Xradia ``.xrm`` / ``.txrm`` (:mod:`xtwin.io.xradia`): grouped into one scan per acquisition;
* a ``.toml`` / ``.json`` sidecar describing TIFF stacks (:mod:`xtwin.io.tiff`);
* NSLS-II FXI HDF5 exports (:mod:`xtwin.io.fxi`);
* Data Exchange HDF5 (APS; one file per energy or all in one) is read by ``process``
  directly; converting it writes one multi-energy file.
"""

from __future__ import annotations

import os
from pathlib import Path

from xtwin.errors import XtwinInputError
from xtwin.io.scan import ScanData


def convert_files(
    files: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    force: bool = False,
    flats: str | None = None,
    darks: str | None = None,
) -> list[tuple[Path, ScanData]]:
    """Convert beamline files to scan file(s); see the module docstring for the kinds.

    Returns
    -------
    list of (pathlib.Path, ScanData)
        The files written and their scans (several for Xradia files of several
        acquisitions).

    Raises
    ------
    XtwinInputError
        Files of mixed or unknown kinds, or anything the readers refuse.
    """
    from xtwin._files import check_can_write
    from xtwin.io.scan import write_scan

    paths: list[str | os.PathLike] = [Path(f) for f in files]
    if not paths:
        raise XtwinInputError("no files given")
    for p in paths:
        if not Path(p).exists():
            raise XtwinInputError(f"{p} does not exist; check the path")
    suffixes = {Path(p).suffix.lower() for p in paths}
    if suffixes <= {".xrm", ".txrm"}:
        from xtwin.io.xradia import convert_xradia

        return convert_xradia(paths, out, force=force, flats=flats, darks=darks)
    if (flats or darks) and not suffixes <= {".xrm", ".txrm"}:
        raise XtwinInputError("--flats and --darks select Xradia frames; give .xrm/.txrm files")
    if len(paths) == 1 and suffixes <= {".toml", ".json"}:
        from xtwin.io.tiff import tiff_to_scan

        check_can_write(out, force=force)
        scan = tiff_to_scan(paths[0])
    elif suffixes <= {".h5", ".hdf5", ".hdf"}:
        from xtwin.io.fxi import fxi_to_scan, is_fxi

        check_can_write(out, force=force)
        if all(is_fxi(p) for p in paths):
            scan = fxi_to_scan(paths)
        else:
            from xtwin.io.source import read_scans

            scan = read_scans(paths)
    else:
        raise XtwinInputError(
            f"cannot convert files ending in {', '.join(sorted(suffixes))}: give Xradia "
            ".xrm/.txrm files, one .toml/.json sidecar of TIFF stacks, or HDF5 files (FXI or "
            "Data Exchange)"
        )
    write_scan(out, scan)
    return [(Path(out), scan)]
