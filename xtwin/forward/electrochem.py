"""PyBaMM DFN solve of the operando protocol, with a particle-size distribution.

The DFN (``Mohtat2020`` by default, any PyBaMM parameter set by name) is run with PyBaMM's
``"particle size": "distribution"`` option, so particles of different radius lithiate
differently. When ``couple_geometry`` is set, the cathode thickness, porosity, active-material
fraction, median particle radius and size spread come from the generated microstructure, and
the nominal capacity and the anode thickness are scaled with cathode thickness x active
fraction, so that "1C" keeps its meaning and the set's N/P balance is kept.

At each snapshot we keep c(r/R, R, x) and convert it to lithiation fraction
``w = (theta - theta_100) / (theta_0 - theta_100)`` with the parameter set's own 0 % / 100 %
SOC stoichiometries (``pybamm.lithium_ion.get_min_max_stoichiometries``); depth is measured
from the separator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.forward.scenario import ElectrochemistrySpec


@dataclass(frozen=True)
class Geometry:
    """Cathode geometry handed to PyBaMM (from the microstructure)."""

    thickness_m: float
    porosity: float
    active_fraction: float
    median_radius_m: float
    size_log_sigma: float


@dataclass(frozen=True)
class Snapshot:
    """PyBaMM's lithiation at one time: w(r/R, R, depth) and its volume averages."""

    time_s: float
    lithiation: np.ndarray  # (n_r, n_R, n_x)
    volume_average: np.ndarray  # (n_R, n_x)
    psd_average: np.ndarray  # (n_x,), volume-weighted over the size distribution


@dataclass(frozen=True)
class ElectrochemResult:
    """The solution on PyBaMM's grids, the snapshots and the cell's history.

    Attributes
    ----------
    r_norm : ndarray (n_r,)
        Normalized radius of the particle mesh (cell centres).
    radius_m : ndarray (n_R,)
        Particle radii of the size mesh.
    depth_m : ndarray (n_x,)
        Distance from the separator of the cathode mesh.
    volume_weights : ndarray (n_R,)
        Volume-weighted size distribution x bin width (sums to 1).
    snapshots : list of Snapshot
    time_s, voltage_V, current_A : ndarray
        The whole solution.
    theta_0, theta_100 : float
        Positive stoichiometry at 0 % and 100 % SOC.
    geometry : Geometry
    parameter_set : str
    """

    r_norm: np.ndarray
    radius_m: np.ndarray
    depth_m: np.ndarray
    volume_weights: np.ndarray
    snapshots: list[Snapshot]
    time_s: np.ndarray
    voltage_V: np.ndarray
    current_A: np.ndarray
    theta_0: float
    theta_100: float
    geometry: Geometry
    parameter_set: str
    initial_lithiation: float = 1.0

    def particle_average(self, k: int, depth_m: np.ndarray, radius_m: np.ndarray) -> np.ndarray:
        """PyBaMM's volume-averaged w of snapshot k for particles at (depth, radius)."""
        from scipy.interpolate import RegularGridInterpolator

        rgi = RegularGridInterpolator(
            (self.radius_m, self.depth_m), self.snapshots[k].volume_average
        )
        return rgi(np.stack([self._clip_r(radius_m), self._clip_x(depth_m)], axis=-1))

    def profile(
        self, k: int, depth_m: np.ndarray, radius_m: np.ndarray, r_norm: np.ndarray
    ) -> np.ndarray:
        """w of snapshot k at (depth, particle radius, normalized radius) triplets."""
        from scipy.interpolate import RegularGridInterpolator

        rgi = RegularGridInterpolator(
            (self.r_norm, self.radius_m, self.depth_m), self.snapshots[k].lithiation
        )
        rn = np.clip(r_norm, self.r_norm[0], self.r_norm[-1])
        return rgi(np.stack([rn, self._clip_r(radius_m), self._clip_x(depth_m)], axis=-1))

    def psd_average_at(self, k: int, depth_m: np.ndarray) -> np.ndarray:
        """PyBaMM's size-distribution-averaged w of snapshot k at given depths."""
        return np.interp(depth_m, self.depth_m, self.snapshots[k].psd_average)

    def _clip_r(self, r: np.ndarray) -> np.ndarray:
        return np.clip(r, self.radius_m[0], self.radius_m[-1])

    def _clip_x(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.depth_m[0], self.depth_m[-1])


def _parameters(spec: ElectrochemistrySpec, geometry: Geometry | None):
    import pybamm

    try:
        params = pybamm.ParameterValues(spec.parameter_set)
    except Exception as exc:  # pybamm raises several types for unknown sets
        raise XtwinInputError(
            f"PyBaMM has no parameter set {spec.parameter_set!r} ({exc}); use e.g. Mohtat2020"
        ) from None
    if geometry is None:
        geometry = Geometry(
            params["Positive electrode thickness [m]"],
            params["Positive electrode porosity"],
            params["Positive electrode active material volume fraction"],
            params["Positive particle radius [m]"],
            0.2,
        )
    elif spec.couple_geometry:
        scale = (geometry.thickness_m * geometry.active_fraction) / (
            params["Positive electrode thickness [m]"]
            * params["Positive electrode active material volume fraction"]
        )
        params.update(
            {
                "Positive electrode thickness [m]": geometry.thickness_m,
                "Positive electrode porosity": geometry.porosity,
                "Positive electrode active material volume fraction": geometry.active_fraction,
                "Positive particle radius [m]": geometry.median_radius_m,
                "Nominal cell capacity [A.h]": params["Nominal cell capacity [A.h]"] * scale,
                # the anode grows with the cathode, so the set's N/P balance (and with it the
                # stoichiometries at 0 % and 100 % SOC) is kept
                "Negative electrode thickness [m]": params["Negative electrode thickness [m]"]
                * scale,
            }
        )
    if spec.particle_size_distribution:
        params = pybamm.get_size_distribution_parameters(
            params,
            R_p_av=geometry.median_radius_m,
            sd_p=max(geometry.size_log_sigma, 0.05),
            sd_n=0.3,
        )
    return params, geometry


def solve(spec: ElectrochemistrySpec, geometry: Geometry | None = None) -> ElectrochemResult:
    """Run the protocol and extract the lithiation field at every snapshot.

    Raises
    ------
    XtwinInputError
        Unknown parameter set, an unreadable protocol step, a failed solve, or a snapshot
        after the end of the protocol (e.g. a voltage cut-off came first).
    """
    import pybamm

    params, geometry = _parameters(spec, geometry)
    psd = spec.particle_size_distribution
    model = pybamm.lithium_ion.DFN(options={"particle size": "distribution"} if psd else {})
    period = max(min(spec.snapshot_times_s) / 20.0, 1.0)
    try:
        experiment = pybamm.Experiment(list(spec.protocol), period=f"{period:g} seconds")
    except Exception as exc:
        raise XtwinInputError(
            f"electrochemistry.protocol: PyBaMM cannot read it ({exc}); use "
            "steps like 'Charge at 1C for 1200 seconds'"
        ) from None
    sim = pybamm.Simulation(model, parameter_values=params, experiment=experiment)
    try:
        sol = sim.solve(initial_soc=spec.initial_soc)
    except pybamm.SolverError as exc:
        raise XtwinInputError(
            f"the PyBaMM solve failed ({str(exc)[:200]}); lower the C-rate or shorten the protocol"
        ) from None
    t = sol["Time [s]"].entries
    if t[-1] < max(spec.snapshot_times_s) - 1.0:
        raise XtwinInputError(
            f"the protocol ended at {t[-1]:.0f} s (a voltage cut-off or its "
            f"last step), before the snapshot at {max(spec.snapshot_times_s):.0f}"
            " s; choose earlier electrochemistry.snapshot_times_s"
        )
    c_max = params["Maximum concentration in positive electrode [mol.m-3]"]
    _, _, theta_100, theta_0 = pybamm.lithium_ion.get_min_max_stoichiometries(params)
    l_n = params["Negative electrode thickness [m]"]
    l_s = params["Separator thickness [m]"]
    x = sol["x_p [m]"].entries[:, 0] - (l_n + l_s)
    if psd:
        c = sol["Positive particle concentration distribution [mol.m-3]"].entries  # r,R,x,t
        radius = sol["Positive particle sizes [m]"].entries[:, 0, 0]
        f_v = sol["Positive volume-weighted particle-size distribution [m-1]"].entries
        f_v = f_v[:, 0, 0] if f_v.ndim == 3 else np.ravel(f_v[:, 0])
        widths = np.gradient(radius)
        vw = f_v * widths
        vw = vw / vw.sum()
    else:
        c = sol["Positive particle concentration [mol.m-3]"].entries[:, None]  # r,1,x,t
        radius = np.array([params["Positive particle radius [m]"]])
        vw = np.array([1.0])
    n_r = c.shape[0]
    r_norm = (np.arange(n_r) + 0.5) / n_r
    edges = np.linspace(0.0, 1.0, n_r + 1)
    shell = np.diff(edges**3)
    theta_init = c[..., 0] / c_max
    w_init = float(np.mean((theta_init - theta_100) / (theta_0 - theta_100)))
    snaps = []
    for t_snap in spec.snapshot_times_s:
        i = int(np.argmin(np.abs(t - t_snap)))
        theta = c[..., i] / c_max
        w = (theta - theta_100) / (theta_0 - theta_100)
        vavg = np.einsum("r,rRx->Rx", shell, w)
        snaps.append(Snapshot(float(t[i]), w, vavg, vw @ vavg))
    return ElectrochemResult(
        r_norm=r_norm,
        radius_m=radius,
        depth_m=x,
        volume_weights=vw,
        snapshots=snaps,
        time_s=t,
        voltage_V=sol["Voltage [V]"].entries,
        current_A=sol["Current [A]"].entries,
        theta_0=float(theta_0),
        theta_100=float(theta_100),
        geometry=geometry,
        parameter_set=spec.parameter_set,
        initial_lithiation=w_init,
    )
