"""Reference fields on lattices: wave equations, Klein–Gordon, sine-Gordon, φ⁴ and a
membrane, each a local density with hand-derived equations of motion.

Every density here is ℓ_i = ½ φ̇_i² − ½ c² |D φ|_i² − V(φ_i), summed over the sites
without a volume factor Δx, so the velocity Hessian is the identity and the
Euler–Lagrange equations read φ̈_j = −∂/∂φ_j Σ_i (½ c² |D φ|_i² + V(φ_i)).
D is a finite difference (forward, or central for `wave1d-central`).

Boundaries follow `lddnn.lattice`: a fixed boundary reads 0 outside the grid, and
only the sites of the grid carry a density. A forward difference at site i reaches
i + 1, so on a fixed chain the bond to the wall on the right is in the Lagrangian
and the one on the left is not: the right end is held at 0 and the left end is
free. The hand-derived equations reproduce exactly that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lddnn.field import LatticeLagrangian
from lddnn.lattice import Lattice, grid
from lddnn.systems._system import with_overrides

__all__ = ["FieldSystem", "sine_gordon_kink"]


@dataclasses.dataclass(frozen=True)
class FieldSystem:
    """A field on a grid with a known local density and hand-derived dynamics.

    Parameters common to every field: `sites` (per axis), `spacing` Δx (all axes),
    `amplitude` and `correlation_length` of the sampled initial states; the rest are
    couplings of the density.

    Attributes:
        name: the command-line name, e.g. "sine-gordon".
        description: one line saying what the field is.
        ndim: the grid's dimension, 1 or 2.
        default_params: parameter names and default values.
        density: `density(phi, phid, t, params) -> scalar` on one neighbourhood,
            values in the stencil order of `lattice(params)`.
        equations: `equations(phi, phid, t, params, periodic) -> phidd` on the
            whole grid, derived by hand and written with explicit stencils (no
            automatic differentiation); `periodic` holds a flag per axis. Call it
            through `equations_of_motion`.
        sampler: `sampler(key, params, lattice) -> (phi0, phid0)`; call it through
            `sample_initial_state`.
        energy_scale: `energy_scale(params) -> float`, the energy of a typical
            sampled state to within a factor of order one (the denominator of
            relative energy errors).
        boundary: "periodic" or "fixed", for every axis.
    """

    name: str
    description: str
    ndim: int
    default_params: dict[str, float]
    density: Callable[..., Any]
    equations: Callable[..., Any]
    sampler: Callable[..., Any]
    energy_scale: Callable[..., Any]
    boundary: str = "periodic"

    def params(self, **overrides) -> dict[str, Any]:
        """The default parameters with `overrides` applied; a ValueError names the
        valid parameters when an override is unknown."""
        return with_overrides(self.name, self.default_params, overrides)

    def with_boundary(self, boundary: str) -> FieldSystem:
        """The same field with "periodic" or "fixed" boundaries."""
        if boundary not in ("periodic", "fixed"):
            raise ValueError(f"`boundary` is {boundary!r}; use 'periodic' or 'fixed'.")
        return dataclasses.replace(self, boundary=boundary)

    def lattice(self, params: dict | None = None) -> Lattice:
        """The grid of `params` (defaults when None): `sites` per axis, `spacing`."""
        params = self.params() if params is None else params
        sites = _site_count(params["sites"])
        spacing = float(params["spacing"])
        return grid((sites,) * self.ndim, spacing=spacing, boundary=self.boundary)

    def lagrangian(self, params: dict | None = None) -> LatticeLagrangian:
        """The density on `lattice(params)` as one Lagrangian of the flattened
        field, for `lddnn.rollout`, `lddnn.energy` and `lddnn.accelerations`."""
        return LatticeLagrangian(self.density, self.lattice(params))

    def equations_of_motion(self, phi, phid, t, params) -> jax.Array:
        """φ̈ of the hand-derived equations on the whole grid."""
        periodic = (self.boundary == "periodic",) * self.ndim
        return self.equations(phi, phid, t, params, periodic)

    def sample_initial_state(self, key, params) -> tuple[jax.Array, jax.Array]:
        """A random smooth state (φ0, φ̇0) on `lattice(params)`."""
        return self.sampler(key, params, self.lattice(params))


def _site_count(value) -> int:
    # Parameters given on the command line arrive as floats.
    sites = float(value)
    if sites != int(sites) or sites < 1:
        raise ValueError(
            f"The parameter `sites` is {value!r}; it must be a positive whole number "
            "of grid sites per axis."
        )
    return int(sites)


# ---------------------------------------------------------------- explicit stencils


def _neighbour(x, shift: int, axis: int, periodic: bool):
    """x_{i + shift} along `axis`: wrapped around, or 0 past a fixed boundary."""
    moved = jnp.roll(x, -shift, axis=axis)
    if periodic:
        return moved
    n = x.shape[axis]
    index = np.arange(n) + shift
    inside = ((index >= 0) & (index < n)).reshape((n,) + (1,) * (x.ndim - axis - 1))
    return jnp.where(inside, moved, 0.0)


def _forward_force(phi, spacing, c, periodic):
    """−∂/∂φ_j of Σ_i ½ c² Σ_axes ((φ_{i+e} − φ_i)/Δx)².

    With the bond flux g_i = c² (φ_{i+e} − φ_i)/Δx², site j gains g_j from its own
    density and loses g_{j−e} from its neighbour's: in the interior this is the
    3-point Laplacian c² (φ_{j+1} − 2φ_j + φ_{j−1})/Δx². On a fixed axis g_{−1}
    belongs to no site, which leaves the left end free.
    """
    force = jnp.zeros_like(phi)
    for axis, wraps in enumerate(periodic):
        flux = c**2 * (_neighbour(phi, 1, axis, wraps) - phi) / spacing**2
        force = force + flux - _neighbour(flux, -1, axis, wraps)
    return force


def _central_force(phi, spacing, c, periodic):
    """−∂/∂φ_j of Σ_i ½ c² ((φ_{i+1} − φ_{i−1})/(2Δx))² on a chain.

    With g_i = c² (φ_{i+1} − φ_{i−1})/(4Δx²), site j gains g_{j+1} − g_{j−1}: in
    the interior the wide Laplacian c² (φ_{j+2} − 2φ_j + φ_{j−2})/(4Δx²), which
    couples even sites only to even sites and odd only to odd.
    """
    (wraps,) = periodic
    flux = c**2 * (_neighbour(phi, 1, 0, wraps) - _neighbour(phi, -1, 0, wraps))
    flux = flux / (4 * spacing**2)
    return _neighbour(flux, 1, 0, wraps) - _neighbour(flux, -1, 0, wraps)


# ----------------------------------------------------------------------- densities
# A chain's neighbourhood is (φ_{i−1}, φ_i, φ_{i+1}). The 2-D star stencil's offsets
# in lexicographic order are (−1, 0), (0, −1), (0, 0), (0, 1), (1, 0): the site is
# entry 2, its forward neighbours along the axes are entries 4 (axis 0) and 3.

_CENTRE_1D, _AHEAD_1D = 1, (2,)
_CENTRE_2D, _AHEAD_2D = 2, (4, 3)


def _forward_gradient_energy(phi, params, centre, ahead):
    """½ c² Σ_axes ((φ_{i+e} − φ_i)/Δx)² at one site."""
    differences = jnp.stack([phi[j] - phi[centre] for j in ahead])
    return 0.5 * params["c"] ** 2 * jnp.sum(differences**2) / params["spacing"] ** 2


def _chain_density(potential):
    """ℓ = ½ φ̇_i² − ½ c² ((φ_{i+1} − φ_i)/Δx)² − V(φ_i) on a chain."""

    def density(phi, phid, t, params):
        kinetic = 0.5 * phid[_CENTRE_1D] ** 2
        gradient = _forward_gradient_energy(phi, params, _CENTRE_1D, _AHEAD_1D)
        return kinetic - gradient - potential(phi[_CENTRE_1D], params)

    return density


def _chain_equations(potential_force):
    """φ̈ = (3-point Laplacian) − V′(φ), with V′ written out by hand."""

    def equations(phi, phid, t, params, periodic):
        force = _forward_force(phi, params["spacing"], params["c"], periodic)
        return force + potential_force(phi, params)

    return equations


def _central_density(phi, phid, t, params):
    """ℓ = ½ φ̇_i² − ½ c² ((φ_{i+1} − φ_{i−1})/(2Δx))²."""
    slope = (phi[2] - phi[0]) / (2 * params["spacing"])
    return 0.5 * phid[1] ** 2 - 0.5 * params["c"] ** 2 * slope**2


def _central_equations(phi, phid, t, params, periodic):
    return _central_force(phi, params["spacing"], params["c"], periodic)


def _membrane_density(phi, phid, t, params):
    """ℓ = ½ φ̇_ij² − ½ c² [((φ_{i+1,j} − φ_ij)/Δx)² + ((φ_{i,j+1} − φ_ij)/Δx)²]."""
    gradient = _forward_gradient_energy(phi, params, _CENTRE_2D, _AHEAD_2D)
    return 0.5 * phid[_CENTRE_2D] ** 2 - gradient


def _membrane_equations(phi, phid, t, params, periodic):
    """The 5-point Laplacian c² Σ_axes (φ_{+e} − 2φ + φ_{−e})/Δx²."""
    return _forward_force(phi, params["spacing"], params["c"], periodic)


# Potentials V(φ) and the forces −V′(φ), the latter differentiated by hand.


def _no_potential(phi, params):
    return 0.0 * phi


def _mass_potential(phi, params):
    return 0.5 * params["mu"] ** 2 * phi**2


def _mass_force(phi, params):
    return -params["mu"] ** 2 * phi


def _cosine_potential(phi, params):
    return 1.0 - jnp.cos(phi)


def _cosine_force(phi, params):
    return -jnp.sin(phi)


def _double_well_potential(phi, params):
    return 0.25 * params["lam"] * (phi**2 - 1.0) ** 2


def _double_well_force(phi, params):
    return -params["lam"] * phi * (phi**2 - 1.0)


# ---------------------------------------------------------------- initial states


def _mode_basis(n: int, spacing: float, periodic: bool, length: float) -> np.ndarray:
    """(n, modes) standing and travelling waves of one axis, each weighted by
    exp(−(k ℓ)²/4): a field with independent normal coefficients on this basis is
    Gaussian with covariance ∝ exp(−r²/(2ℓ²)), whatever the number of sites.

    A periodic axis takes cos and sin of k = 2πm/(nΔx), m ≥ 1 (no mean, so no
    uniform drift); a fixed axis takes sin(πm(i + 1)/(n + 1)), which vanishes on
    the walls at i = −1 and i = n.
    """
    sites = np.arange(n)
    if periodic:
        m = np.arange(1, n // 2 + 1)
        k = 2 * np.pi * m / (n * spacing)
        phase = np.outer(sites * spacing, k)
        basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1)
        k = np.concatenate([k, k])
    else:
        m = np.arange(1, n + 1)
        k = np.pi * m / ((n + 1) * spacing)
        basis = np.sin(np.outer((sites + 1) * spacing, k))
    return basis * np.exp(-((k * length) ** 2) / 4)


def _smooth_field(key, lattice: Lattice, length: float, rms: float) -> jax.Array:
    """A random smooth field of root-mean-square value `rms`, correlated over
    `length` (held at two grid spacings or more, so the grid resolves it)."""
    bases = [
        jnp.asarray(_mode_basis(n, h, wraps, max(length, 2 * h)))
        for n, h, wraps in zip(lattice.shape, lattice.spacing, lattice.periodic)
    ]
    coefficients = jax.random.normal(key, tuple(b.shape[1] for b in bases))
    if len(bases) == 1:
        field = bases[0] @ coefficients
    else:
        field = jnp.einsum("im,jn,mn->ij", bases[0], bases[1], coefficients)
    return rms * field / jnp.sqrt(jnp.mean(field**2))


def _sample_smooth(key, params, lattice):
    """φ0 and φ̇0 independent smooth random fields correlated over ℓ =
    `correlation_length`; φ0 has RMS `amplitude` A and φ̇0 RMS A c/ℓ, so kinetic and
    gradient energies are alike."""
    field_key, rate_key = jax.random.split(key)
    length, amplitude = params["correlation_length"], params["amplitude"]
    phi = _smooth_field(field_key, lattice, length, amplitude)
    phid = _smooth_field(rate_key, lattice, length, amplitude * params["c"] / length)
    return phi, phid


def _energy_scale(ndim: int, potential_scale: Callable[[dict], float]):
    """N (½ (1 + ndim) A² c²/ℓ² + V̄) on N = sites^ndim sites: the kinetic energy
    ½ A² c²/ℓ² per site of a sampled state, its gradient energy ½ A² c²/ℓ² per site
    and axis (for a domain many ℓ long), and a typical potential energy V̄."""

    def scale(params):
        amplitude, length = params["amplitude"], params["correlation_length"]
        waves = 0.5 * (1 + ndim) * (amplitude * params["c"] / length) ** 2
        return (waves + potential_scale(params)) * _site_count(params["sites"]) ** ndim

    return scale


# ------------------------------------------------------------------------- systems

_COMMON = {"c": 1.0, "amplitude": 1.0}
# Linear waves have no length of their own: ℓ = 5Δx resolves every sampled mode.
_WAVE_GRID = {"sites": 128, "spacing": 0.1, "correlation_length": 0.5}
# Kinks of sine-Gordon and φ⁴ are about c wide: 4 sites per unit length, and sampled
# states varying over 2 units.
_KINK_GRID = {"sites": 128, "spacing": 0.25, "correlation_length": 2.0}

WAVE_1D = FieldSystem(
    name="wave1d",
    description=(
        "wave equation on a chain, ℓ = ½ φ̇² − ½ c² ((φ_{i+1} − φ_i)/Δx)²; the "
        "3-point Laplacian"
    ),
    ndim=1,
    default_params={**_WAVE_GRID, **_COMMON},
    density=_chain_density(_no_potential),
    equations=_chain_equations(_no_potential),
    sampler=_sample_smooth,
    energy_scale=_energy_scale(1, lambda params: 0.0),
)

WAVE_1D_CENTRAL = FieldSystem(
    name="wave1d-central",
    description=(
        "wave equation with the central difference, ℓ = ½ φ̇² − ½ c² ((φ_{i+1} − "
        "φ_{i−1})/(2Δx))²; a wide Laplacian that decouples even and odd sites"
    ),
    ndim=1,
    default_params={**_WAVE_GRID, **_COMMON},
    density=_central_density,
    equations=_central_equations,
    sampler=_sample_smooth,
    energy_scale=_energy_scale(1, lambda params: 0.0),
)

KLEIN_GORDON = FieldSystem(
    name="klein-gordon",
    description="Klein–Gordon field of mass μ on a chain, V(φ) = ½ μ² φ²",
    ndim=1,
    default_params={**_WAVE_GRID, **_COMMON, "mu": 1.0},
    density=_chain_density(_mass_potential),
    equations=_chain_equations(_mass_force),
    sampler=_sample_smooth,
    energy_scale=_energy_scale(1, lambda p: 0.5 * (p["mu"] * p["amplitude"]) ** 2),
)

SINE_GORDON = FieldSystem(
    name="sine-gordon",
    description="sine-Gordon field on a chain, V(φ) = 1 − cos φ; kinks and breathers",
    ndim=1,
    default_params={**_KINK_GRID, **_COMMON},
    density=_chain_density(_cosine_potential),
    equations=_chain_equations(_cosine_force),
    sampler=_sample_smooth,
    # 1 − cos φ ≈ ½ φ² at the sampled amplitudes.
    energy_scale=_energy_scale(1, lambda p: 0.5 * p["amplitude"] ** 2),
)

PHI4 = FieldSystem(
    name="phi4",
    description=(
        "φ⁴ field on a chain, V(φ) = λ/4 (φ² − 1)²; sampled states start around the "
        "barrier φ = 0 and form domain walls"
    ),
    ndim=1,
    default_params={**_KINK_GRID, **_COMMON, "lam": 1.0},
    density=_chain_density(_double_well_potential),
    equations=_chain_equations(_double_well_force),
    sampler=_sample_smooth,
    # The barrier height V(0) = λ/4.
    energy_scale=_energy_scale(1, lambda p: 0.25 * p["lam"]),
)

MEMBRANE_2D = FieldSystem(
    name="membrane2d",
    description=(
        "wave equation on a square grid (a membrane), forward differences along x "
        "and y; the 5-point Laplacian"
    ),
    ndim=2,
    default_params={**_WAVE_GRID, **_COMMON, "sites": 64},
    density=_membrane_density,
    equations=_membrane_equations,
    sampler=_sample_smooth,
    energy_scale=_energy_scale(2, lambda params: 0.0),
)

FIELD_SYSTEMS = (WAVE_1D, WAVE_1D_CENTRAL, KLEIN_GORDON, SINE_GORDON, PHI4, MEMBRANE_2D)


def sine_gordon_kink(x, t=0.0, *, velocity=0.0, position=0.0, charge=1, c=1.0):
    """The travelling kink of φ_tt − c² φ_xx + sin φ = 0 and its velocity:

        φ = q · 4 arctan exp(ξ),  φ̇ = −q · 2 sech(ξ) γ v / c,
        ξ = γ (x − x0 − v t) / c,  γ = 1 / √(1 − v²/c²),

    with charge q = 1 (a kink, φ rising from 0 to 2π) or −1 (an antikink). It solves
    the continuum equation; on a grid it is accurate to O(Δx²). A kink alone does not
    fit a periodic or fixed grid, whose ends must agree; a kink and an antikink far
    apart (their sum) do, up to their exponentially small tails and attraction.

    Arguments:
        x: positions, any shape.
        t: time.
        velocity: v, with |v| < c.
        position: x0, the centre at t = 0.
        charge: 1 or −1.
        c: the wave speed.

    Returns:
        (φ, φ̇) with the shape of x.
    """
    if not abs(velocity) < c:
        raise ValueError(
            f"`velocity` is {velocity!r}; a kink moves slower than the wave speed "
            f"c = {c!r}."
        )
    if charge not in (1, -1):
        raise ValueError(f"`charge` is {charge!r}; use 1 (kink) or −1 (antikink).")
    gamma = 1.0 / np.sqrt(1.0 - (velocity / c) ** 2)
    xi = gamma * (jnp.asarray(x) - position - velocity * t) / c
    phi = charge * 4.0 * jnp.arctan(jnp.exp(xi))
    phid = -charge * 2.0 * gamma * velocity / c / jnp.cosh(xi)
    return phi, phid
