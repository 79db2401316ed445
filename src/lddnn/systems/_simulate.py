"""Ground-truth trajectories of the reference systems."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from lddnn.data import Dataset
from lddnn.integrate import rollout
from lddnn.mechanics import accelerations
from lddnn.systems._registry import get
from lddnn.systems._system import MechanicalSystem


def _default_tolerance(dtype) -> float:
    # 1e-10 is ground truth in float64; float32 cannot resolve below about 1e-6.
    return 1e-10 if jnp.finfo(dtype).eps < 1e-10 else 1e-6


def simulate(
    system: MechanicalSystem | str,
    key: jax.Array,
    count: int,
    t,
    params: dict | None = None,
    *,
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt: float | None = None,
    max_steps: int = 1_000_000,
) -> Dataset:
    """Sample `count` initial states of `system` and integrate its own Lagrangian.

    The accelerations stored with the trajectories are those of the Euler–Lagrange
    equations, q̈ = M⁻¹(∇_q L − C q̇), at every saved state.

    Arguments:
        system: a `MechanicalSystem` or its name.
        key: a `jax.random` key; the same key gives the same dataset.
        count: number of trajectories.
        t: save times, shape (T,), strictly increasing; t[0] is the initial time.
        params: parameter overrides, e.g. `{"g": 3.7}`; the rest are defaults.
        solver, dt, max_steps: as for `lddnn.integrate.rollout`.
        rtol, atol: tolerances of adaptive solvers; by default 1e-10 for float64
            states and 1e-6 (the tightest float32 resolves) for float32.

    Returns:
        A `Dataset` with `q`, `qd` and `qdd` of shape (count, T, n), the system's name,
        its parameters and its angle flags.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> data = simulate("pendulum", jax.random.key(0), 3, jnp.linspace(0, 1, 11))
        >>> data.q.shape
        (3, 11, 1)
    """
    system = _mechanical(get(system) if isinstance(system, str) else system)
    params = system.params(**(params or {}))
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"`count` must be a positive integer, got {count!r}.")
    keys = jax.random.split(key, count)
    q0, qd0 = jax.vmap(system.sample_initial_state, in_axes=(0, None))(keys, params)
    tolerance = _default_tolerance(q0.dtype)
    q, qd = rollout(
        system.lagrangian,
        q0,
        qd0,
        t,
        params,
        solver=solver,
        rtol=tolerance if rtol is None else rtol,
        atol=tolerance if atol is None else atol,
        dt=dt,
        max_steps=max_steps,
    )
    t = jnp.asarray(t, q.dtype)
    traced_params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, q.dtype), params)
    qdd = _accelerations_along(system.lagrangian, q, qd, t, traced_params)
    return Dataset(
        t=np.asarray(t),
        q=np.asarray(q),
        qd=np.asarray(qd),
        qdd=np.asarray(qdd),
        system=system.name,
        params={name: float(value) for name, value in params.items()},
        angles=system.angles,
    )


def _mechanical(system) -> MechanicalSystem:
    if not isinstance(system, MechanicalSystem):
        raise ValueError(
            f"System {system.name!r} is a field on a lattice, not a mechanical "
            "system; simulate it with lddnn.systems.simulate_field."
        )
    return system


@eqx.filter_jit
def _accelerations_along(lagrangian, q, qd, t, params):
    """q̈ at every saved state: q, qd of shape (B, T, n), t of shape (T,)."""

    def at_state(q_, qd_, t_):
        return accelerations(lagrangian, q_, qd_, t_, params)

    over_time = jax.vmap(at_state)
    return jax.vmap(over_time, in_axes=(0, 0, None))(q, qd, t)


def sample_states(
    system: MechanicalSystem | str,
    key: jax.Array,
    count: int,
    params: dict | None = None,
) -> Dataset:
    """`count` independent states from `system.sample_state`, with their accelerations.

    The states cover the region of state space that the system's trajectories visit
    without the correlation of states along a trajectory, which is what a model of
    the dynamics over that region learns from best. The result is a `Dataset` of
    `count` one-sample trajectories at t = 0.

    Raises:
        ValueError: when the system has no `sample_state`.
    """
    system = _mechanical(get(system) if isinstance(system, str) else system)
    if system.sample_state is None:
        raise ValueError(
            f"System {system.name!r} has no state sampler; sample it along "
            "trajectories instead (sampling='trajectories')."
        )
    params = system.params(**(params or {}))
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"`count` must be a positive integer, got {count!r}.")
    keys = jax.random.split(key, count)
    q, qd = jax.vmap(system.sample_state, in_axes=(0, None))(keys, params)
    t = jnp.zeros((1,), q.dtype)
    traced_params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, q.dtype), params)
    qdd = _accelerations_along(system.lagrangian, q[:, None], qd[:, None], t, traced_params)
    return Dataset(
        t=np.asarray(t),
        q=np.asarray(q[:, None]),
        qd=np.asarray(qd[:, None]),
        qdd=np.asarray(qdd),
        system=system.name,
        params={name: float(value) for name, value in params.items()},
        angles=system.angles,
    )
