"""Arrays written at byte offsets of a file, past the page cache where the system allows it.

A Li map is written once and not read again by the process that writes it, and it is several
times the memory of the machine. Written through the page cache, every byte is copied into
it by the kernel, written back later by the kernel's flusher threads and evicted again; on a
2-core virtual machine that cost 0.4-0.5 s of system time per GB, beside the reconstruction it
competes with. Written with ``O_DIRECT`` the disk reads the bytes from the array itself
(11 GB: 0.09 core-seconds against 5-6, and half the wall time). Direct writes need the file
offset, the length and the memory address on the disk's block boundaries: whatever part of
a write is not (the ends, or an array not aligned in memory like its place in the file) goes
through a small aligned buffer or the page cache, and a system or file system without
``O_DIRECT`` (macOS, tmpfs) gets ordinary writes of the same bytes.
"""

from __future__ import annotations

import errno
import os

import numpy as np

#: Block boundary for direct writes (covers disks of 512- and 4096-byte blocks).
ALIGN = 4096
#: Bytes staged at a time when an array's address is not aligned like its file offset.
_STAGE = 4 << 20


def aligned_empty(shape: tuple[int, ...] | int, dtype=np.float32) -> np.ndarray:
    """An uninitialized C-contiguous array whose first byte is on an :data:`ALIGN` boundary."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) * dt.itemsize
    raw = np.empty(n + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start : start + n].view(dt).reshape(shape)


class RawWriter:
    """Writes C-contiguous arrays' bytes at given offsets of an existing file.

    Parameters
    ----------
    path
        The file (it must exist; it is neither created nor truncated).

    Notes
    -----
    The bytes reach the disk's queue (direct writes) or the page cache (the unaligned ends):
    call ``fdatasync`` on any descriptor of the file to make them durable. Another writer of
    the same byte ranges through its own cache (an HDF5 library writing these datasets) would
    see stale data: the caller owns the ranges it writes here.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._fd = os.open(path, os.O_WRONLY)
        self._direct = -1
        flag = getattr(os, "O_DIRECT", 0)
        if flag:
            try:
                self._direct = os.open(path, os.O_WRONLY | flag)
            except OSError:  # a file system without direct I/O: ordinary writes
                self._direct = -1
        self._stage: np.ndarray | None = None

    @property
    def direct(self) -> bool:
        """Whether the aligned parts of writes bypass the page cache."""
        return self._direct >= 0

    def write(self, offset: int, arr: np.ndarray) -> None:
        """Write ``arr``'s bytes (C order) at byte ``offset`` of the file.

        Raises
        ------
        ValueError
            ``arr`` is not C-contiguous (its bytes are not one run).
        OSError
            The write failed (a full disk: ``errno.ENOSPC``).
        """
        if not arr.flags.c_contiguous:
            raise ValueError("RawWriter.write needs a C-contiguous array")
        mv = arr.reshape(-1).view(np.uint8).data
        n = len(mv)
        head = min((-offset) % ALIGN, n) if self.direct else n
        body = (n - head) // ALIGN * ALIGN
        if head:
            self._pwrite(self._fd, mv[:head], offset)
        if body:
            self._write_aligned(mv[head : head + body], arr.ctypes.data + head, offset + head)
        if head + body < n:
            self._pwrite(self._fd, mv[head + body :], offset + head + body)

    def _write_aligned(self, mv: memoryview, address: int, offset: int) -> None:
        """Bytes whose offset and length are on block boundaries: straight from the array when
        its address is too, else through the staging buffer."""
        try:
            if address % ALIGN == 0:
                self._pwrite(self._direct, mv, offset)
                return
            if self._stage is None:
                self._stage = aligned_empty(_STAGE, np.uint8)
            stage = self._stage
            for s in range(0, len(mv), _STAGE):
                part = mv[s : s + _STAGE]
                stage[: len(part)] = np.frombuffer(part, np.uint8)
                self._pwrite(self._direct, stage[: len(part)].data, offset + s)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # the file system opened the file for direct I/O but refuses such writes
            os.close(self._direct)
            self._direct = -1
            self._pwrite(self._fd, mv, offset)

    @staticmethod
    def _pwrite(fd: int, mv: memoryview, offset: int) -> None:
        done = 0
        while done < len(mv):  # a write may be short (at most about 2 GB at once on Linux)
            done += os.pwrite(fd, mv[done:], offset + done)

    def close(self) -> None:
        """Close the descriptors (the bytes written stay where they went)."""
        for fd in (self._fd, self._direct):
            if fd >= 0:
                os.close(fd)
        self._fd = self._direct = -1
