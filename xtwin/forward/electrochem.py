"""PyBaMM DFN solve and the lithiation field it implies at a snapshot time.

The cell starts fully discharged (PyBaMM's initial stoichiometry, w = 1 for Mohtat2020) and is
charged (or discharged from the charged state) at a constant C-rate. At the snapshot we take
the positive particle concentration c(r, x), convert it to lithiation fraction w with
:func:`xtwin.physics.materials.lithiation_from_stoichiometry`, and keep it on PyBaMM's own
(r/R, depth) grid; depth is measured from the separator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.forward.scenario import ElectrochemistrySpec
from xtwin.physics.materials import lithiation_from_stoichiometry


@dataclass(frozen=True)
class LithiationProfile:
    """PyBaMM's lithiation w(r/R, depth) at the snapshot, and the cell's history.

    Attributes
    ----------
    r_norm : ndarray (n_r,)
        Normalized radius of PyBaMM's particle mesh.
    depth_m : ndarray (n_x,)
        Distance from the separator of PyBaMM's cathode mesh.
    lithiation : ndarray (n_r, n_x)
        w at the snapshot.
    volume_average : ndarray (n_x,)
        Particle volume average of w at each depth.
    time_s, voltage_V, current_A : ndarray
        The solution up to the snapshot.
    thickness_m : float
        Cathode thickness.
    """

    r_norm: np.ndarray
    depth_m: np.ndarray
    lithiation: np.ndarray
    volume_average: np.ndarray
    time_s: np.ndarray
    voltage_V: np.ndarray
    current_A: np.ndarray
    thickness_m: float

    def at(self, depth_m: np.ndarray, r_norm: np.ndarray) -> np.ndarray:
        """w at given depths and normalized radii (bilinear interpolation, clamped)."""
        from scipy.interpolate import RegularGridInterpolator

        rgi = RegularGridInterpolator((self.r_norm, self.depth_m), self.lithiation,
                                      bounds_error=False, fill_value=None)
        d = np.clip(depth_m, self.depth_m[0], self.depth_m[-1])
        r = np.clip(r_norm, self.r_norm[0], self.r_norm[-1])
        return rgi(np.stack([r, d], axis=-1))

    def mean_at(self, depth_m: np.ndarray) -> np.ndarray:
        """Particle volume average of w at given depths."""
        return np.interp(depth_m, self.depth_m, self.volume_average)


def solve(spec: ElectrochemistrySpec) -> LithiationProfile:
    """Run the DFN and extract the lithiation field at ``spec.snapshot_time_s``.

    Raises
    ------
    XtwinInputError
        Unknown parameter set, or a snapshot after the voltage cut-off.
    """
    import pybamm

    try:
        params = pybamm.ParameterValues(spec.parameter_set)
    except Exception as exc:  # pybamm raises several types for unknown sets
        raise XtwinInputError(f"PyBaMM has no parameter set {spec.parameter_set!r} ({exc}); "
                              "use e.g. Mohtat2020") from None
    model = pybamm.lithium_ion.DFN()
    t_snap = float(spec.snapshot_time_s)
    if spec.mode == "discharge":
        params = params.copy()
        params.update({"Initial concentration in positive electrode [mol.m-3]":
                       0.034 * params["Maximum concentration in positive electrode [mol.m-3]"],
                       "Initial concentration in negative electrode [mol.m-3]":
                       0.85 * params["Maximum concentration in negative electrode [mol.m-3]"]})
    verb = "Charge" if spec.mode == "charge" else "Discharge"
    steps = [f"{verb} at {spec.c_rate:g}C for {max(t_snap, 1.0):g} seconds"]
    sim = pybamm.Simulation(model, parameter_values=params,
                            experiment=pybamm.Experiment(steps, period=f"{max(t_snap / 50, 1):g}"
                                                         " seconds"))
    try:
        sol = sim.solve()
    except pybamm.SolverError as exc:
        raise XtwinInputError(f"the PyBaMM solve failed ({exc}); lower c_rate or "
                              "snapshot_time_s") from None
    t = sol["Time [s]"].entries
    if t[-1] < t_snap - 1.0:
        raise XtwinInputError(f"the cell reached its voltage cut-off at {t[-1]:.0f} s, before "
                              f"the snapshot at {t_snap:.0f} s; choose an earlier "
                              "electrochemistry.snapshot_time_s or a lower c_rate")
    c_max = params["Maximum concentration in positive electrode [mol.m-3]"]
    c = sol["Positive particle concentration [mol.m-3]"].entries  # (r, x, t)
    r = sol["r_p [m]"].entries[:, 0, 0]
    x = sol["x_p [m]"].entries[:, 0]
    l_n = params["Negative electrode thickness [m]"]
    l_s = params["Separator thickness [m]"]
    l_p = params["Positive electrode thickness [m]"]
    r_p = params["Positive particle radius [m]"]
    i = int(np.argmin(np.abs(t - t_snap)))
    w = lithiation_from_stoichiometry(c[:, :, i] / c_max)
    r_norm = r / r_p
    # volume average over the sphere with PyBaMM's cell-centred radial mesh
    edges = np.concatenate([[0.0], 0.5 * (r_norm[1:] + r_norm[:-1]), [1.0]])
    shell = np.diff(edges**3)
    vavg = (shell[:, None] * w).sum(axis=0) / shell.sum()
    return LithiationProfile(
        r_norm=r_norm, depth_m=x - (l_n + l_s), lithiation=w, volume_average=vavg,
        time_s=t[: i + 1], voltage_V=sol["Voltage [V]"].entries[: i + 1],
        current_A=sol["Current [A]"].entries[: i + 1], thickness_m=float(l_p))
