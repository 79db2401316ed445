"""Rollouts of Lagrangian dynamics: Runge–Kutta solvers and a variational integrator.

`rollout` integrates the Euler–Lagrange equations of any Lagrangian
`lagrangian(q, qd, t, params) -> scalar` from initial states `(q0, qd0)` and returns the
coordinates and velocities at the requested times. The Runge–Kutta solvers come from
diffrax and integrate the first-order state equation y' = (q̇, q̈(q, q̇, t)); the
variational integrator discretizes the action itself, which keeps energy errors bounded
over long times instead of letting them drift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from lddnn.mechanics import vector_field

__all__ = ["RK4", "SOLVERS", "IntegrationError", "rollout"]

Solver = Literal["rk4", "tsit5", "dopri5", "dopri8", "variational"]
FIXED_STEP_SOLVERS = ("rk4", "variational")
ADAPTIVE_SOLVERS = ("tsit5", "dopri5", "dopri8")
SOLVERS = FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS

# A save interval must be a whole number of steps dt to within this fraction of a step;
# the steps are then stretched to land exactly on the save time.
_GRID_TOLERANCE = 1e-3
# Newton iterations of the variational integrator converge quadratically: once an
# update is below eps^(3/4) the next error is below eps^(3/2), i.e. round-off.
_NEWTON_ITERATIONS = 20


class IntegrationError(RuntimeError):
    """A rollout failed: the step limit was reached, an implicit step did not
    converge, or the state became non-finite."""


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge–Kutta method (Kutta 1901), four stages.

    Fourth order, no embedded error estimate: use it with a fixed step. diffrax has
    no classical RK4 of its own, so this defines one from its Butcher tableau.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    )
    interpolation_cls: ClassVar[Callable[..., Any]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4


@dataclasses.dataclass(frozen=True)
class _Options:
    """The static (compile-time) settings of one rollout."""

    solver: str
    rtol: float
    atol: float
    dt: float | None
    max_steps: int
    mass: str
    check: bool
    throw: bool


def _is_traced(*trees) -> bool:
    leaves = jax.tree_util.tree_leaves(trees)
    return any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def _check_initial_state(q0, qd0) -> None:
    if q0.ndim not in (1, 2) or qd0.shape != q0.shape:
        raise ValueError(
            f"`q0` has shape {q0.shape} and `qd0` has shape {qd0.shape}; both must "
            "have the same shape, (n,) for one initial state or (B, n) for a batch."
        )


def _check_times(t, solver: str) -> None:
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(
            f"`t` has shape {t.shape}; it must be a 1-D array of at least two save "
            "times, the first being the initial time."
        )
    if _is_traced(t):
        if solver in FIXED_STEP_SOLVERS:
            raise ValueError(
                f"solver={solver!r} needs concrete save times `t` to lay out its "
                "steps; pass `t` as a constant (closed over or static), not as a "
                "traced argument of a jitted function."
            )
        return
    steps = np.diff(np.asarray(t))
    if np.any(steps <= 0):
        raise ValueError(
            "`t` must be strictly increasing (its first decrease or repeat is at "
            f"index {int(np.argmax(steps <= 0)) + 1}); sort the save times."
        )


def _check_options(solver: str, dt, rtol: float, dtype) -> None:
    if solver not in SOLVERS:
        raise ValueError(
            f"Unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}."
        )
    if solver in FIXED_STEP_SOLVERS and (dt is None or not dt > 0):
        raise ValueError(
            f"solver={solver!r} takes fixed steps, so it needs a positive step `dt`; "
            f"got dt={dt!r}."
        )
    floor = 4 * float(jnp.finfo(dtype).eps)
    if solver in ADAPTIVE_SOLVERS and rtol < floor:
        raise ValueError(
            f"rtol={rtol:g} is below what {jnp.dtype(dtype).name} can resolve "
            f"(4 eps = {floor:.1e}); pass a larger rtol, or use float64 states "
            "(enable jax_enable_x64)."
        )


def default_tolerance(dtype) -> float:
    """The default rtol and atol: 1e-8 in float64, 1e-6 (near its limit) in float32."""
    return 1e-8 if jnp.finfo(dtype).eps < 1e-10 else 1e-6


def step_counts(t, dt: float) -> np.ndarray:
    """Number of fixed steps in each save interval, round((t[i+1] − t[i]) / dt).

    Raises a ValueError when an interval is not a whole multiple of `dt` (to within
    0.1% of a step), because saved states of fixed-step solvers are step results.
    """
    intervals = np.diff(np.asarray(t, dtype=np.float64))
    counts = np.rint(intervals / dt)
    off_grid = np.abs(intervals - counts * dt) > _GRID_TOLERANCE * dt
    if np.any(counts < 1) or np.any(off_grid):
        i = int(np.argmax((counts < 1) | off_grid))
        raise ValueError(
            f"The save interval t[{i + 1}] − t[{i}] = {intervals[i]:g} is not a whole "
            f"number of steps dt = {dt:g}; fixed-step solvers save only at step "
            "times, so choose dt = (t[1] − t[0]) / k for an integer k, or save times "
            "on the grid t[0] + j·dt."
        )
    return counts.astype(np.int64)


def _step_grid(t: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """All step times: each save interval split into its count of equal steps."""
    starts = np.repeat(t[:-1], counts)
    widths = np.repeat(np.diff(t) / counts, counts)
    offsets = np.concatenate([np.arange(k) for k in counts])
    return np.append(starts + offsets * widths, t[-1])


def _as_params(params, dtype):
    """Floating parameters as arrays of the state dtype: traced, so new values do not
    recompile, and of the same precision as the state."""

    def convert(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree_util.tree_map(convert, params)


def _diffrax_solver(name: str):
    return {
        "rk4": RK4,
        "tsit5": diffrax.Tsit5,
        "dopri5": diffrax.Dopri5,
        "dopri8": diffrax.Dopri8,
    }[name]()


@eqx.filter_jit
def _solve_ode(lagrangian, y0, t, params, forces, dissipation, grid, options):
    """Batched diffrax solve of y' = (q̇, q̈); returns the saved states and results."""
    field = vector_field(
        lagrangian, forces, dissipation, mass=options.mass, check=options.check
    )
    if options.solver == "rk4":
        controller, dt0 = diffrax.StepTo(ts=grid), None
    else:
        controller = diffrax.PIDController(rtol=options.rtol, atol=options.atol)
        dt0 = options.dt

    def solve_one(y0_):
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            _diffrax_solver(options.solver),
            t0=t[0],
            t1=t[-1],
            dt0=dt0,
            y0=y0_,
            args=params,
            saveat=diffrax.SaveAt(ts=t),
            stepsize_controller=controller,
            max_steps=options.max_steps,
            throw=options.throw,
        )
        return solution.ys, solution.result

    return jax.vmap(solve_one)(y0)


def _raise_if_failed(result, ys, options: _Options) -> None:
    """Turn a failed diffrax solve (eager) into an `IntegrationError` that says why."""
    failed = np.asarray(result != diffrax.RESULTS.successful)
    if failed.any():
        i = int(np.argmax(failed))
        reason = diffrax.RESULTS[jax.tree_util.tree_map(lambda x: x[i], result)]
        raise IntegrationError(
            f"The {options.solver} rollout failed for {int(failed.sum())} of "
            f"{failed.size} initial states (first: index {i}): {reason} "
            f"(max_steps={options.max_steps}, rtol={options.rtol:g}, "
            f"atol={options.atol:g}). Raise max_steps, loosen the tolerances, or "
            "shorten the time span; a state running off to a singularity fails too."
        )
    _raise_if_nonfinite(ys, options.solver)


def _raise_if_nonfinite(ys, solver: str) -> None:
    finite = np.isfinite(np.asarray(ys)).all(axis=tuple(range(1, ys.ndim)))
    if not finite.all():
        i = int(np.argmin(finite))
        raise IntegrationError(
            f"The {solver} rollout produced NaN or inf for {int((~finite).sum())} of "
            f"{finite.size} initial states (first: index {i}); the step is too large "
            "for the dynamics, or the Lagrangian is undefined along the trajectory."
        )


def _rollout_ode(lagrangian, y0, t, params, forces, dissipation, options):
    grid = None
    if options.solver == "rk4":
        t_host = np.asarray(t, dtype=np.float64)
        grid = jnp.asarray(_step_grid(t_host, step_counts(t_host, options.dt)), t.dtype)
    ys, result = _solve_ode(
        lagrangian, y0, t, params, forces, dissipation, grid, options
    )
    if options.throw:
        # Inside a compiled caller diffrax has already attached its own check.
        return eqx.error_if(ys, ~jnp.all(jnp.isfinite(ys)), _NONFINITE_TRACED)
    _raise_if_failed(result, ys, options)
    return ys


# The variational integrator. With the trapezoidal discrete Lagrangian
#     L_d(q0, q1) = h/2 [L(q0, v, t0) + L(q1, v, t0 + h)],  v = (q1 − q0)/h,
# and the discrete forces f⁻ = h/2 Q(t0, q0, v), f⁺ = h/2 Q(t0 + h, q1, v), a step maps
# (q0, p0) to (q1, p1) by solving  p0 + ∂L_d/∂q0 + f⁻ = 0  for q1 (Newton) and setting
# p1 = ∂L_d/∂q1 + f⁺ (the discrete Lagrange–d'Alembert principle, Marsden & West 2001,
# §3.2). For L = ½ q̇ᵀMq̇ − V(q) with constant M this is Störmer–Verlet. The state is
# carried as (q, p), so velocities are recovered only at save times, from p = ∂L/∂q̇.


def _newton(residual, x0, tolerance):
    """Solve residual(x) = 0 by Newton's method from x0; returns (x, converged)."""

    def unconverged(state):
        x, update, i = state
        return (i < _NEWTON_ITERATIONS) & (update > tolerance * (1 + _norm(x)))

    def iterate(state):
        x, _, i = state
        delta = jnp.linalg.solve(jax.jacfwd(residual)(x), residual(x))
        return x - delta, _norm(delta), i + 1

    start = (x0, jnp.asarray(jnp.inf, x0.dtype), 0)
    x, update, _ = jax.lax.while_loop(unconverged, iterate, start)
    return x, update <= tolerance * (1 + _norm(x))


def _norm(x):
    return jnp.max(jnp.abs(x))


def _discrete_forces(forces, dissipation, params):
    """Q(t, q, v) = forces − ∂D/∂q̇, or None when no generalized force acts."""
    if forces is None and dissipation is None:
        return None

    def total(t, q, v):
        value = jnp.zeros_like(q) if forces is None else forces(t, q, v, params)
        if dissipation is not None:
            value = value - jax.grad(dissipation, argnums=1)(q, v, params)
        return value

    return total


def _variational_step(lagrangian, force, params, tolerance):
    """One step (q0, p0, v0) -> (q1, p1, v) of size h from time t0."""

    def discrete_lagrangian(q0, q1, t0, h):
        v = (q1 - q0) / h
        ends = lagrangian(q0, v, t0, params) + lagrangian(q1, v, t0 + h, params)
        return 0.5 * h * ends

    def half_forces(q0, q1, t0, h):
        if force is None:
            return 0.0, 0.0
        v = (q1 - q0) / h
        return 0.5 * h * force(t0, q0, v), 0.5 * h * force(t0 + h, q1, v)

    def step(q0, p0, v0, t0, h):
        def residual(q1):
            d_q0 = jax.grad(discrete_lagrangian, argnums=0)(q0, q1, t0, h)
            return p0 + d_q0 + half_forces(q0, q1, t0, h)[0]

        # Predictor: continue with the last step's mean velocity.
        q1, converged = _newton(residual, q0 + h * v0, tolerance)
        p1 = jax.grad(discrete_lagrangian, argnums=1)(q0, q1, t0, h)
        p1 = p1 + half_forces(q0, q1, t0, h)[1]
        return q1, p1, (q1 - q0) / h, converged

    return step


def _velocity(lagrangian, params, q, p, t, guess, tolerance):
    """Invert the Legendre map p = ∂L/∂q̇(q, q̇, t) for q̇ by Newton's method."""

    def residual(qd):
        return jax.grad(lagrangian, argnums=1)(q, qd, t, params) - p

    return _newton(residual, guess, tolerance)


@eqx.filter_jit
def _solve_variational(
    lagrangian, q0, qd0, t, params, forces, dissipation, counts, longest, tolerance
):
    """Batched variational rollout; returns q, q̇ at the save times and success flags.

    Each save interval takes `counts[i]` steps inside a scan of the longest count;
    the surplus steps of shorter intervals are skipped.
    """
    force = _discrete_forces(forces, dissipation, params)
    step = _variational_step(lagrangian, force, params, tolerance)
    widths = (t[1:] - t[:-1]) / counts

    def interval(carry, segment):
        t_start, h, count = segment

        def substep(state, j):
            q, p, v, ok = state
            q1, p1, v1, converged = step(q, p, v, t_start + j * h, h)
            advanced = (q1, p1, v1, ok & converged)
            return jax.lax.cond(j < count, lambda: advanced, lambda: state), None

        (q, p, v, ok), _ = jax.lax.scan(substep, carry, jnp.arange(longest))
        t_end = t_start + count * h
        qd, converged = _velocity(lagrangian, params, q, p, t_end, v, tolerance)
        return (q, p, v, ok), (q, qd, ok & converged)

    def solve_one(q0_, qd0_):
        p0 = jax.grad(lagrangian, argnums=1)(q0_, qd0_, t[0], params)
        carry = (q0_, p0, qd0_, jnp.asarray(True))
        _, (q, qd, ok) = jax.lax.scan(interval, carry, (t[:-1], widths, counts))
        q = jnp.concatenate([q0_[None], q])
        qd = jnp.concatenate([qd0_[None], qd])
        return q, qd, ok.all() & jnp.isfinite(q).all() & jnp.isfinite(qd).all()

    return jax.vmap(solve_one)(q0, qd0)


def _rollout_variational(lagrangian, q0, qd0, t, params, forces, dissipation, options):
    counts = step_counts(np.asarray(t, dtype=np.float64), options.dt)
    tolerance = float(jnp.finfo(q0.dtype).eps) ** 0.75
    q, qd, ok = _solve_variational(
        lagrangian,
        q0,
        qd0,
        t,
        params,
        forces,
        dissipation,
        jnp.asarray(counts, dtype=t.dtype),
        int(counts.max()),
        tolerance,
    )
    if options.throw:
        return eqx.error_if((q, qd), ~jnp.all(ok), _VARIATIONAL_FAILED_TRACED)
    ok = np.asarray(ok)
    if not ok.all():
        i = int(np.argmin(ok))
        raise IntegrationError(
            f"The variational rollout failed for {int((~ok).sum())} of {ok.size} "
            f"initial states (first: index {i}): a Newton solve of the discrete "
            f"Euler–Lagrange equations did not converge in {_NEWTON_ITERATIONS} "
            "iterations or the state became non-finite. Reduce dt, or check that "
            "∂²L/∂q̇² is non-singular along the trajectory."
        )
    return q, qd


_VARIATIONAL_FAILED_TRACED = (
    "The variational rollout failed: a Newton solve of the discrete Euler–Lagrange "
    "equations did not converge or the state became non-finite; reduce dt."
)


_NONFINITE_TRACED = (
    "The rollout produced NaN or inf; the step is too large for the dynamics, or the "
    "Lagrangian is undefined along the trajectory."
)


def rollout(
    lagrangian: Callable[..., jax.Array],
    q0,
    qd0,
    t,
    params: Any = None,
    *,
    solver: Solver = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt: float | None = None,
    max_steps: int = 1_000_000,
    forces: Callable[..., jax.Array] | None = None,
    dissipation: Callable[..., jax.Array] | None = None,
    mass: Literal["auto", "spd"] = "auto",
    check: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Integrate d/dt ∂L/∂q̇ − ∂L/∂q = Q from (q0, qd0); save (q, q̇) at times `t`.

    Solvers:
        "rk4": classical Runge–Kutta (Kutta 1901), order 4, fixed step `dt`.
        "tsit5": Tsitouras 5(4) (Tsitouras 2011), adaptive.
        "dopri5": Dormand–Prince 5(4) (Dormand & Prince 1980), adaptive.
        "dopri8": Dormand–Prince 8(7) (Prince & Dormand 1981), adaptive.
        "variational": the discrete Euler–Lagrange equations of the trapezoidal
            (Störmer–Verlet) discrete Lagrangian (Marsden & West 2001), order 2,
            fixed step `dt`, symplectic: energy errors stay bounded instead of
            drifting. Each step solves the implicit equation for the next q by
            Newton's method; velocities are recovered at the save times from the
            momentum p = ∂L/∂q̇. Forward-mode differentiable only (Newton loops).

    The adaptive solvers use diffrax's PID step-size controller with `rtol`/`atol`
    (by default 1e-8 for float64 states and 1e-6 for float32) and interpolate their
    dense output at the save times; `dt`, if given, is their first step. The
    fixed-step solvers save only at step times: every save interval
    must be a whole number of steps `dt` (to within 0.1% of a step; the steps are
    stretched by that much to land exactly on the save times).

    Arguments:
        lagrangian: `lagrangian(q, qd, t, params) -> scalar`.
        q0, qd0: initial coordinates and velocities, shape (n,) or (B, n).
        t: save times, shape (T,), strictly increasing; t[0] is the initial time.
        params: the Lagrangian's parameters, passed to every callable.
        solver: one of "rk4", "tsit5", "dopri5", "dopri8", "variational".
        rtol, atol: tolerances of the adaptive solvers; None for the default of
            the state's precision.
        dt: the step of the fixed-step solvers (required for them).
        max_steps: the step limit of the diffrax solvers.
        forces, dissipation, mass, check: as for `lddnn.accelerations`.

    Returns:
        `(q, qd)`, each of shape ([B,] T, n).

    Raises:
        IntegrationError: when the step limit is reached, an implicit step does not
            converge, or the state becomes non-finite (inside a compiled caller: an
            equinox runtime error with the same meaning).

    Example:
        >>> import jax.numpy as jnp
        >>> oscillator = lambda q, qd, t, p: 0.5 * qd @ qd - 0.5 * q @ q
        >>> t = jnp.array([0.0, 1.0])
        >>> q, qd = rollout(oscillator, jnp.ones(1), jnp.zeros(1), t)
        >>> round(float(q[-1, 0]), 6)  # cos(1)
        0.540302
    """
    q0, qd0 = jnp.asarray(q0), jnp.asarray(qd0)
    dtype = jnp.result_type(q0, qd0, float)
    q0, qd0, t = q0.astype(dtype), qd0.astype(dtype), jnp.asarray(t).astype(dtype)
    _check_initial_state(q0, qd0)
    rtol = default_tolerance(dtype) if rtol is None else rtol
    atol = default_tolerance(dtype) if atol is None else atol
    _check_options(solver, dt, rtol, dtype)
    _check_times(t, solver)
    params = _as_params(params, dtype)
    batched = q0.ndim == 2
    q0, qd0 = jnp.atleast_2d(q0), jnp.atleast_2d(qd0)
    options = _Options(
        solver, rtol, atol, dt, max_steps, mass, check, _is_traced(q0, qd0, t, params)
    )
    if solver == "variational":
        q, qd = _rollout_variational(
            lagrangian, q0, qd0, t, params, forces, dissipation, options
        )
    else:
        y0 = jnp.concatenate([q0, qd0], axis=-1)
        ys = _rollout_ode(lagrangian, y0, t, params, forces, dissipation, options)
        q, qd = jnp.split(ys, 2, axis=-1)
    return (q, qd) if batched else (q[0], qd[0])
