"""Ground-truth trajectories of the reference fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from lddnn.field import field_lagrangian
from lddnn.integrate import rollout
from lddnn.lattice import Lattice
from lddnn.systems._fields import FieldSystem

Dynamics = Literal["equations", "density"]

__all__ = ["FieldTrajectories", "rollout_field", "simulate_field"]


class FieldTrajectories(NamedTuple):
    """Trajectories of a field on a grid.

    Attributes:
        t: save times, (T,).
        phi, phid, phidd: the field, its velocity and acceleration,
            (B, T, *grid) each.
        system: the system's name.
        params: its parameters.
        lattice: the grid (`lattice.describe()` gives its spacing and boundary).
    """

    t: np.ndarray
    phi: np.ndarray
    phid: np.ndarray
    phidd: np.ndarray
    system: str
    params: dict[str, float]
    lattice: Lattice


class _HandDerived(eqx.Module):
    """A field's total Lagrangian whose accelerations are its hand-derived equations
    of motion: what `lddnn.rollout` integrates for ground truth."""

    density: Callable[..., Any]
    equations: Callable[..., Any]
    lattice: Lattice

    def __call__(self, q, qd, t=0.0, params=None):
        shape = self.lattice.shape
        return field_lagrangian(
            self.density, self.lattice, q.reshape(shape), qd.reshape(shape), t, params
        )

    def accelerations(self, q, qd, t=0.0, params=None, **options):
        shape = self.lattice.shape
        phi, phid = q.reshape(shape), qd.reshape(shape)
        phidd = self.equations(phi, phid, t, params, self.lattice.periodic)
        return phidd.reshape(q.shape)


def _default_tolerance(dtype) -> float:
    # As for mechanical ground truth: 1e-10 in float64, 1e-6 in float32.
    return 1e-10 if jnp.finfo(dtype).eps < 1e-10 else 1e-6


def _model(system: FieldSystem, params: dict, dynamics: str):
    lattice = system.lattice(params)
    if dynamics == "equations":
        return _HandDerived(system.density, system.equations, lattice)
    if dynamics == "density":
        return system.lagrangian(params)
    raise ValueError(
        f"`dynamics` is {dynamics!r}; use 'equations' (the hand-derived equations "
        "of motion) or 'density' (Euler–Lagrange of the density, solved in O(N))."
    )


def rollout_field(
    system: FieldSystem,
    phi0,
    phid0,
    t,
    params: dict | None = None,
    *,
    dynamics: Dynamics = "equations",
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt: float | None = None,
    max_steps: int = 1_000_000,
) -> tuple[jax.Array, jax.Array]:
    """Integrate a field from (φ0, φ̇0) and save (φ, φ̇) at times `t`.

    Arguments:
        system: a `FieldSystem`.
        phi0, phid0: initial field and velocity, shape `grid` or (B, *grid), where
            `grid` is the shape of `system.lattice(params)`.
        t: save times, (T,), strictly increasing; t[0] is the initial time.
        params: all of the system's parameters (`system.params(...)`); defaults
            when None.
        dynamics: "equations" integrates the hand-derived equations of motion
            (explicit stencils, the fastest); "density" solves the Euler–Lagrange
            equations of the density itself with `lddnn.field_accelerations`. They
            agree to round-off.
        solver, rtol, atol, dt, max_steps: as for `lddnn.rollout`, with tolerances
            that default to 1e-10 in float64 (1e-6 in float32).

    Returns:
        (φ, φ̇), each of shape ([B,] T, *grid).
    """
    params = system.params() if params is None else params
    model = _model(system, params, dynamics)
    shape = model.lattice.shape
    phi0, phid0 = jnp.asarray(phi0), jnp.asarray(phid0)
    batched = phi0.ndim == len(shape) + 1
    if phi0.shape[batched:] != shape or phid0.shape != phi0.shape:
        raise ValueError(
            f"`phi0` has shape {phi0.shape} and `phid0` {phid0.shape}; both must "
            f"have the grid's shape {shape}, or (B, *{shape}) for a batch."
        )
    flat = phi0.reshape(phi0.shape[:batched] + (-1,))
    tolerance = _default_tolerance(jnp.result_type(phi0, float))
    q, qd = rollout(
        model,
        flat,
        phid0.reshape(flat.shape),
        t,
        params,
        solver=solver,
        rtol=tolerance if rtol is None else rtol,
        atol=tolerance if atol is None else atol,
        dt=dt,
        max_steps=max_steps,
    )
    field_shape = q.shape[:-1] + shape
    return q.reshape(field_shape), qd.reshape(field_shape)


def simulate_field(
    system: FieldSystem | str,
    key: jax.Array,
    count: int,
    t,
    params: dict | None = None,
    *,
    dynamics: Dynamics = "equations",
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt: float | None = None,
    max_steps: int = 1_000_000,
) -> FieldTrajectories:
    """Sample `count` random smooth states of a field and integrate them, in float64.

    The accelerations stored are those of the hand-derived equations of motion at
    every saved state. Everything is computed with 64-bit floats whatever the
    global JAX setting (a scoped `jax.enable_x64`).

    Arguments:
        system: a `FieldSystem` or its name; `system.with_boundary("fixed")` for
            fixed boundaries.
        key: a `jax.random` key; the same key gives the same trajectories.
        count: number of trajectories.
        t: save times, (T,), strictly increasing; t[0] is the initial time.
        params: parameter overrides, e.g. `{"sites": 256}`; the rest are defaults.
        dynamics, solver, rtol, atol, dt, max_steps: as for `rollout_field`.

    Returns:
        `FieldTrajectories` with `phi`, `phid`, `phidd` of shape (count, T, *grid).

    Example:
        >>> import jax, numpy as np
        >>> data = simulate_field("wave1d", jax.random.key(0), 2, np.linspace(0, 1, 5),
        ...                       {"sites": 32})
        >>> data.phi.shape
        (2, 5, 32)
    """
    from lddnn.systems._registry import get

    system = get(system) if isinstance(system, str) else system
    if not isinstance(system, FieldSystem):
        raise ValueError(
            f"System {system.name!r} is not a field; simulate it with "
            "lddnn.systems.simulate."
        )
    params = system.params(**(params or {}))
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"`count` must be a positive integer, got {count!r}.")
    with jax.enable_x64(True):
        keys = jax.random.split(key, count)
        sample = jax.vmap(system.sample_initial_state, in_axes=(0, None))
        phi0, phid0 = sample(keys, params)
        t = jnp.asarray(t, jnp.float64)
        phi, phid = rollout_field(
            system,
            phi0,
            phid0,
            t,
            params,
            dynamics=dynamics,
            solver=solver,
            rtol=rtol,
            atol=atol,
            dt=dt,
            max_steps=max_steps,
        )
        phidd = _accelerations_along(system, phi, phid, t, params)
    return FieldTrajectories(
        t=np.asarray(t),
        phi=np.asarray(phi),
        phid=np.asarray(phid),
        phidd=np.asarray(phidd),
        system=system.name,
        params={name: float(value) for name, value in params.items()},
        lattice=system.lattice(params),
    )


def _accelerations_along(system: FieldSystem, phi, phid, t, params):
    """φ̈ at every saved state: phi, phid of shape (B, T, *grid), t of shape (T,)."""

    @jax.jit
    def along(phi_, phid_, t_):
        at_state = lambda u, v, s: system.equations_of_motion(u, v, s, params)
        over_time = jax.vmap(at_state)
        return jax.vmap(over_time, in_axes=(0, 0, None))(phi_, phid_, t_)

    return along(phi, phid, t)
