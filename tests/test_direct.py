"""Arrays written at byte offsets past the page cache: the file holds exactly the bytes, at
any offset, length and memory alignment, with direct I/O and without."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xtwin.io.direct import ALIGN, RawWriter, aligned_empty

pytestmark = pytest.mark.skipif(not hasattr(os, "pwrite"), reason="needs os.pwrite")


def test_aligned_empty_starts_on_a_block_boundary():
    for shape in [(3,), (5, 7), (2, 3, 1025)]:
        a = aligned_empty(shape, np.float32)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.ctypes.data % ALIGN == 0


@settings(max_examples=40, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 3 * ALIGN + 17), st.integers(1, 3 * ALIGN + 5), st.integers(0, 7)),
        min_size=1,
        max_size=5,
    ),
    direct=st.booleans(),
)
def test_file_holds_exactly_the_bytes_written(tmp_path_factory, writes, direct):
    """Later writes overwrite earlier ones byte for byte; bytes never written stay zero."""
    path = tmp_path_factory.mktemp("raw") / "f.bin"
    size = 8 * ALIGN
    path.write_bytes(bytes(size))
    expect = np.zeros(size, np.uint8)
    rng = np.random.default_rng(len(writes))
    w = RawWriter(path)
    if not direct and w.direct:  # the ordinary path too, on a system that has both
        os.close(w._direct)
        w._direct = -1
    try:
        for offset, n, shift in writes:
            n = min(n, size - offset)
            buf = aligned_empty(n + shift, np.uint8)[shift:]  # aligned, or off by 1..7 bytes
            buf[:] = rng.integers(1, 256, n, dtype=np.uint8)
            w.write(offset, buf)
            expect[offset : offset + n] = buf
    finally:
        w.close()
    assert np.array_equal(np.frombuffer(path.read_bytes(), np.uint8), expect)


def test_float_rows_land_where_a_reader_expects_them(tmp_path):
    """A (rows, n, n) float32 block at row 5 of a map of odd width (rows not on block
    boundaries), read back as the map."""
    n, rows = 37, 11
    path = tmp_path / "map.bin"
    path.write_bytes(bytes(rows * n * n * 4))
    block = np.random.default_rng(1).random((4, n, n), dtype=np.float32)
    w = RawWriter(path)
    w.write(5 * n * n * 4, block)
    w.close()
    back = np.fromfile(path, np.float32).reshape(rows, n, n)
    assert np.array_equal(back[5:9], block)
    assert not back[:5].any() and not back[9:].any()


def test_refuses_a_strided_array(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(64))
    w = RawWriter(path)
    try:
        with pytest.raises(ValueError, match="C-contiguous"):
            w.write(0, np.zeros((4, 4), np.float32)[:, ::2])
    finally:
        w.close()
