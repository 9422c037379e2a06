"""Atomic file output: nothing half-written is ever left under the final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from xtwin.errors import XtwinInputError


def check_can_write(path: str | os.PathLike, *, force: bool) -> Path:
    """Refuse to overwrite an existing output unless ``force`` is set.

    Parameters
    ----------
    path : path-like
        The output file.
    force : bool
        Overwrite an existing file.

    Returns
    -------
    pathlib.Path
        The output path.
    """
    path = Path(path)
    if path.exists() and not force:
        raise XtwinInputError(
            f"output {path} already exists; choose another name or pass --force to overwrite it"
        )
    if path.is_dir():
        raise XtwinInputError(f"output {path} is a directory; give a file name")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


def ensure_writable_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and prove that files can be created in it, before any
    computation starts (so a long run never fails at its very end).

    Raises
    ------
    XtwinInputError
        The directory cannot be created or written (read-only, no permission, a file in
        the way).
    """
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".xtwin-write-test.", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise XtwinInputError(
            f"cannot write to {d} ({exc.strerror or exc}); choose an output location you can "
            "write to"
        ) from None
    return d


def refuse_existing(out_dir: str | os.PathLike, names: list[str], *, force: bool) -> None:
    """Refuse to run when any of ``out_dir/name`` exists, unless ``force`` is set.

    Called before any work starts, so a refused command writes nothing.
    """
    existing = [str(Path(out_dir) / n) for n in names if (Path(out_dir) / n).exists()]
    if not existing or force:
        ensure_writable_dir(out_dir)
    if existing and not force:
        raise XtwinInputError(
            f"{', '.join(existing)} already exist; choose another output "
            "directory or pass --force to overwrite"
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        apply_umask(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the permissions a plain ``open()`` would have (0666 minus the umask).

    ``tempfile.mkstemp`` creates files with mode 0600 whatever the umask; outputs are renamed
    from such files, so without this a group could not read shared results.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_of(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file (used in provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def write_csv_atomic(
    path: str | os.PathLike, rows: list[dict], fields: tuple[str, ...] = ()
) -> Path:
    """Write records as CSV atomically (floats with 6 significant digits): ``fields`` first,
    then every key any record has (a record without one gets ``nan``)."""
    import csv

    names = list(fields)
    for r in rows:  # every column any record has, in order of appearance
        names += [k for k in r if k not in names]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, names, restval="nan")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return Path(path)
