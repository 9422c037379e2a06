"""Any number of energies through `process`: two (edge jump), three, four or more (XANES stack).

The phantom is written here with h5py and xraylib directly (not with xtwin's physics): a 2D
XANES field of view (one angle, no theta) with three slabs of NMC of known lithiation and
thickness on a thin background layer, Poisson counts at a stated photon budget split equally
among the energies, so the three-energy and stack modes are compared at equal dose.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xraylib
from scipy.special import erf

from xtwin.cli import main

W_TRUE = (0.1, 0.5, 0.9)
N_ROW, N_COL = 48, 96
EDGE_L, WL_L, EDGE_D, WL_D = 8345.5, 8349.5, 8347.8, 8352.0


def shape(e, edge, wl):
    return 0.5 * (1 + erf((e - edge) / 2.0)) + 0.5 * np.exp(-0.5 * ((e - wl) / 2.5) ** 2)


RHO = 4.74


def jump_per_um(e_eV):
    """Ni K jump of dense NMC532 (1/um), a power law through xraylib's Ni above the edge."""
    ni = xraylib.CS_Total(28, 8.5) - xraylib.CS_Total(28, 8.3) * (8500 / 8300) ** -2.7
    return 0.3039 * ni * (e_eV / 8500.0) ** -2.75 * RHO * 1e-4


def mu_nmc_per_um(e_eV, w):
    bg = xraylib.CS_Total_CP("LiNi0.5Mn0.3Co0.2O2", 8.32) * (e_eV / 8320.0) ** -2.7
    s = w * shape(e_eV, EDGE_L, WL_L) + (1 - w) * shape(e_eV, EDGE_D, WL_D)
    return bg * RHO * 1e-4 + jump_per_um(e_eV) * s


def slab_masks():
    cols = np.arange(N_COL)
    rows = np.arange(N_ROW)
    out = []
    for k in range(3):
        m = np.zeros((N_ROW, N_COL), bool)
        m[8:40, 6 + 30 * k : 26 + 30 * k] = True
        out.append(m & (rows[:, None] >= 0) & (cols[None, :] >= 0))
    return out


def write_xanes(path, energies, photons_total, seed):
    """One 2D XANES file, all energies; photons per pixel split equally over the energies."""
    rng = np.random.default_rng(seed)
    i0 = photons_total / len(energies)
    assert i0 < 6e4, "uint16 counts"
    thick_um = 3.0
    data = np.empty((len(energies), 1, N_ROW, N_COL), np.uint16)
    flats = np.empty((len(energies), 8, N_ROW, N_COL), np.uint16)
    for i, e in enumerate(energies):
        od = np.full((N_ROW, N_COL), 0.05)  # a thin light background layer
        for m, w in zip(slab_masks(), W_TRUE):
            od[m] += thick_um * mu_nmc_per_um(e, w)
        data[i, 0] = rng.poisson(i0 * np.exp(-od))
        flats[i] = rng.poisson(i0, (8, N_ROW, N_COL))
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = data
        f["/exchange/data_white"] = flats
        f["/measurement/instrument/monochromator/energy"] = np.asarray(energies)
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = 30.0
        f["/measurement/instrument/detector/pixel_size"].attrs["units"] = "nm"
    return path


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    e = np.concatenate(
        [np.arange(8200, 8330, 5.0), np.arange(8330, 8380, 0.5), np.arange(8380, 8900, 5.0)]
    )
    out = {}
    for name, w in (("lith", 1.0), ("delith", 0.0)):
        out[name] = d / f"{name}.csv"
        rows = "\n".join(f"{a:.2f},{b:.6f}" for a, b in zip(e, 2 * mu_nmc_per_um(e, w) + 0.1))
        out[name].write_text("energy,absorbance\n" + rows + "\n")
    return out


def _process(scan, out, refs=None):
    args = ["process", str(scan), "-o", str(out)]
    if refs:
        args += ["--lithiated", str(refs["lith"]), "--delithiated", str(refs["delith"])]
    return main(args)


def _slab_stats(lith, sigma):
    out = []
    for m in slab_masks():
        inner = m.copy()
        inner[:10] = inner[-10:] = False
        v = lith[inner]
        out.append((float(np.nanmean(v)), float(np.nanmean(sigma[inner]))))
    return out


def test_two_energies_give_the_edge_jump_and_name_the_third(tmp_path):
    scan = write_xanes(tmp_path / "two.h5", [8320.0, 8400.0], 1e5, 1)
    out = tmp_path / "two_map.h5"
    assert _process(scan, out) == 0  # no references needed for the edge jump
    with h5py.File(out, "r") as f:
        assert f["/edge"].attrs["mode"] == "edge-jump"
        jump = f["/edge/jump_per_m"][()]  # a link to /li/edge_jump_per_m
        jump_sig = f["/edge/jump_sigma_per_m"][()]
        ratio = f["/edge/od_ratio"][()]
        mask = f["/li/mask"][()].astype(bool)
        assert np.isnan(f["/li/lithiation"][()]).all()
        notes = json.loads(f["/provenance"].attrs["notes"])
    slabs = np.any(slab_masks(), axis=0)
    # the mask is the slabs: at least 95 % of slab pixels and at most 1 % of the background
    assert mask[slabs].mean() > 0.95 and mask[~slabs].mean() < 0.01
    # the jump in the slabs is the true Ni jump x thickness (same for every w) within 5 %
    # the jump in the slabs is the true Ni jump x thickness at the reference energy (8345 eV;
    # the same for every w) within 10 %
    assert np.nanmedian(jump[slabs]) == pytest.approx(3.0 * jump_per_um(8345.0), rel=0.1)
    assert np.nanmedian(jump[~slabs]) == pytest.approx(0.0, abs=3 * float(np.nanmedian(jump_sig)))
    assert np.nanmedian(ratio[slabs]) > 1.5 and np.nanmedian(ratio[~slabs]) < 1.2
    third = [n for n in notes if "third energy" in n]
    assert third and "834" in third[0]  # the advice names an energy on the edge


def test_three_energy_and_stack_at_equal_dose(tmp_path, refs):
    """Four-plus energies: the stack's weighted fit recovers w within its own sigma, and its
    edge-position map separates the end members by their edge shift."""
    three = write_xanes(tmp_path / "three.h5", [8320.0, 8347.0, 8400.0], 1.5e5, 2)
    stack_e = list(np.arange(8320.0, 8340.0, 5.0)) + list(np.arange(8340.0, 8358.0, 1.0))
    stack_e += list(np.arange(8360.0, 8410.0, 10.0))
    stack = write_xanes(tmp_path / "stack.h5", stack_e, 1.5e5, 3)
    m3, ms = tmp_path / "m3.h5", tmp_path / "ms.h5"
    assert _process(three, m3, refs) == 0
    assert _process(stack, ms, refs) == 0
    with h5py.File(m3, "r") as f3, h5py.File(ms, "r") as fs:
        assert f3["/edge"].attrs["mode"] == "three-energy"
        assert fs["/edge"].attrs["mode"] == "multi-energy"
        s3 = _slab_stats(f3["/li/lithiation"][()], f3["/li/sigma"][()])
        ss = _slab_stats(fs["/li/lithiation"][()], fs["/li/sigma"][()])
        chi2 = fs["/edge/fit_chi2"][()]
        pos = fs["/edge/edge_position_eV"][()]
        pos_sig = fs["/edge/edge_position_sigma_eV"][()]
        wl = fs["/edge/white_line_eV"][()]
        lith_s = fs["/li/lithiation"][()]
        sig_s = fs["/li/sigma"][()]
    for (m, _), w in zip(s3, W_TRUE):
        assert m == pytest.approx(w, abs=0.03)
    for (m, _), w in zip(ss, W_TRUE):
        assert m == pytest.approx(w, abs=0.03)
    # the per-voxel sigma describes the scatter (z-scores of unit spread within 25 %)
    for msk, w in zip(slab_masks(), W_TRUE):
        z = (lith_s[msk] - w) / sig_s[msk]
        assert 0.75 < np.nanstd(z) < 1.25
    # the model fits: reduced chi-square near 1 in the slabs
    slabs = np.any(slab_masks(), axis=0)
    assert 0.7 < np.nanmedian(chi2[slabs]) < 1.4
    # edge position: delithiated slab's edge above the lithiated one's, by about the shift of
    # the two end members (2.3 eV here) times the w difference, within 3 of its sigmas
    p = [float(np.nanmedian(pos[m])) for m in slab_masks()]
    assert p[0] > p[1] > p[2]
    assert p[0] - p[2] == pytest.approx(0.8 * (EDGE_D - EDGE_L), abs=0.6)
    assert np.nanmedian(pos_sig[slabs]) < 1.0
    w_pos = [float(np.nanmedian(wl[m])) for m in slab_masks()]
    assert WL_L - 1.5 < w_pos[2] < w_pos[0] < WL_D + 1.5


def test_real_ssrl_frames_give_an_edge_jump_map(tmp_path, shared_data):
    """The real SSRL 6-2c NCA frames (two energies): convert and process exit 0, the edge-jump
    map separates particles from the background."""
    frames = sorted((shared_data / "txm" / "ssrl_6-2c_nca").glob("*.xrm"))
    scan = tmp_path / "ssrl.h5"
    assert main(["convert", *map(str, frames), "-o", str(scan)]) == 0
    out = tmp_path / "ssrl_map.h5"
    assert main(["process", str(scan), "-o", str(out)]) == 0
    with h5py.File(out, "r") as f:
        jump = f["/li/edge_jump_per_m"][()]
        sig = f["/li/edge_jump_sigma_per_m"][()]
        mask = f["/li/mask"][()].astype(bool)
    assert 0.1 < mask.mean() < 0.6  # particles cover part of the field of view
    inside, outside = np.nanmedian(jump[mask]), np.nanmedian(jump[~mask])
    # particle/background contrast: the particles' edge jump is many sigmas above the
    # background's, which is near zero
    assert inside > 10 * np.nanmedian(sig[mask])
    assert inside > 5 * abs(outside)
