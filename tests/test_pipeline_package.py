"""The pipeline as a package of stages: options and their resume key, typed events, the
in-memory stages against the streamed pipeline, and a resumed run through an alias."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_pipeline_independent import independent_files  # noqa: F401  (fixture)

from xtwin.errors import XtwinInputError
from xtwin.pipeline import ProcessOptions, RunOptions, resume_key
from xtwin.pipeline._references import read_references


def _key(options: ProcessOptions) -> str:
    return resume_key({"scan.h5": "0" * 64}, read_references(None, None), options)


def test_the_resume_key_follows_every_result_affecting_field():
    base = ProcessOptions()
    for f in dataclasses.fields(ProcessOptions):
        value = getattr(base, f.name)
        if isinstance(value, bool):
            assert _key(dataclasses.replace(base, **{f.name: not value})) != _key(base), f.name
    assert _key(dataclasses.replace(base, rows=(0, 4))) != _key(base)
    assert _key(dataclasses.replace(base, min_jump_snr=2.0)) != _key(base)


def test_a_new_result_affecting_option_enters_the_key_without_editing_a_list():
    # a field added to the record (as a new feature would add it) changes the key by itself
    extended = dataclasses.make_dataclass(
        "Extended",
        [("energy_calibration", str, dataclasses.field(default="none"))],
        bases=(ProcessOptions,),
        frozen=True,
    )
    a, b = extended(), extended(energy_calibration="quick.h5")
    assert "energy_calibration" in a.key()
    assert _key(a) != _key(b)
    # run options are not in it: the same map whatever memory, workers or scheduler
    assert not {f.name for f in dataclasses.fields(RunOptions)} & set(ProcessOptions().key())


def test_the_fast_alias_is_resolved_once():
    assert ProcessOptions(method="fast").method == "fourier"
    assert _key(ProcessOptions(method="fast")) == _key(ProcessOptions(method="fourier"))
    with pytest.raises(XtwinInputError, match="fourier"):
        ProcessOptions(method="fbp")


def test_options_refuse_what_they_cannot_do():
    with pytest.raises(XtwinInputError):
        ProcessOptions(rows=(5, 2))
    with pytest.raises(XtwinInputError):
        RunOptions(workers=0)
    with pytest.raises(XtwinInputError, match="unknown processing option"):
        from xtwin.pipeline.options import split_options

        split_options(blocks=3)


def _limap_arrays(path):
    from xtwin.io.limap import read_limap

    lm = read_limap(path)
    return lm, {"lithiation": lm.lithiation, "sigma": lm.sigma, "mu": lm.mu_per_m}


def test_an_interrupted_fourier_run_resumes_as_fast_bit_for_bit(independent_files, tmp_path):  # noqa: F811
    from xtwin.pipeline import RowsDone, partial_path, process_file

    d, paths, refs = independent_files
    args = (paths, refs["lith"], refs["delith"])
    whole = process_file(*args, tmp_path / "whole.h5", options=ProcessOptions(center_offset_px=0.0))
    out = tmp_path / "cut.h5"
    seen = []

    def stop_after_first_block(event) -> None:
        if isinstance(event, RowsDone):
            seen.append(event.n)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_file(
            *args,
            out,
            options=ProcessOptions(center_offset_px=0.0, method="fourier"),
            run=RunOptions(block_rows=6, workers=1),
            on_event=stop_after_first_block,
        )
    assert partial_path(out).exists() and not out.exists()
    events = []
    process_file(
        *args,
        out,
        options=ProcessOptions(center_offset_px=0.0, method="fast"),
        run=RunOptions(block_rows=6),
        on_event=events.append,
    )
    lm, got = _limap_arrays(out)
    _, ref = _limap_arrays(whole)
    done = events[0].resumed_rows  # the Planned event says so, typed
    assert 0 < done < 60 and done % 6 == 0
    assert (
        f"resumed: {done} of 60 rows were taken from the interrupted run"
        in (lm.provenance["notes"])
    )
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_in_memory_stages_give_the_streamed_map(independent_files):  # noqa: F811
    """normalize_scan -> reconstruct -> retrieve, the in-memory API, gives the map of the
    streamed pipeline bit for bit, with the pipeline's mask reference."""
    from xtwin.io import read_scans
    from xtwin.physics.spectra import normalize, read_spectrum
    from xtwin.pipeline import field_of_view_disc, process_scan
    from xtwin.prep import normalize_scan
    from xtwin.recon import reconstruct
    from xtwin.retrieve import calibrate, retrieve

    d, paths, refs = independent_files
    scan = read_scans(paths)
    streamed = process_scan(
        scan,
        refs["lith"],
        refs["delith"],
        center_offset_px=0.0,
        register=False,
        align_projections="off",
        block_rows=7,
    )
    vol = reconstruct(normalize_scan(scan), center_offset_px=0.0)
    np.testing.assert_array_equal(vol.mu_per_m, streamed.mu_per_m)
    cal = calibrate(
        scan.energy_eV,
        normalize(read_spectrum(refs["lith"])),
        normalize(read_spectrum(refs["delith"])),
    )
    n_c = scan.data.shape[-1]
    ret = retrieve(
        vol.mu_per_m,
        vol.mu_sigma_per_m,
        cal,
        jump_reference_per_m=streamed.provenance["mask"]["jump_reference_per_m"],
        outside=~field_of_view_disc(n_c, 0.0),
    )
    np.testing.assert_array_equal(ret.mask, streamed.mask)
    np.testing.assert_array_equal(ret.lithiation, streamed.lithiation)
    np.testing.assert_array_equal(ret.sigma, streamed.sigma)


@pytest.mark.parametrize("direct", [True, False])
def test_the_file_holds_the_in_memory_map_bit_for_bit(
    independent_files,  # noqa: F811
    tmp_path,
    monkeypatch,
    direct,
):
    """The maps' rows go into the file at their datasets' byte offsets (48 columns: rows of
    9216 bytes, off the disk's block boundaries), past the page cache or, where the file
    system has no direct I/O, through it: the file holds what the in-memory run returns."""
    from xtwin.io import read_scans
    from xtwin.io.direct import RawWriter
    from xtwin.io.limap import read_limap
    from xtwin.pipeline import process_file, process_scan

    d, paths, refs = independent_files
    if not direct:
        monkeypatch.setattr(RawWriter, "direct", property(lambda self: False))
    opts = ProcessOptions(center_offset_px=0.0)
    run = RunOptions(block_rows=7)
    got = read_limap(
        process_file(paths, refs["lith"], refs["delith"], tmp_path / "m.h5", options=opts, run=run)
    )
    ref = process_scan(read_scans(paths), refs["lith"], refs["delith"], options=opts, run=run)
    for name in ("lithiation", "sigma", "mask", "edge_jump_per_m", "mu_per_m", "mu_sigma_per_m"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(got.edge_jump_sigma_per_m, ref.edge_jump_sigma_per_m)
