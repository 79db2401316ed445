"""Euler–Lagrange dynamics of any Lagrangian `lagrangian(q, qd, t, params) -> scalar`.

The equations of motion d/dt ∂L/∂q̇ − ∂L/∂q = Q are expanded by the chain rule into a
linear system for the accelerations,

    M q̈ = ∇_q L − C q̇ − ∂_t ∇_q̇ L + Q,   M = ∂²L/∂q̇², C = ∂²L/∂q̇∂q,

which is solved with a factorization of the velocity Hessian M. A hand-written
Lagrangian and a learned one go through exactly this code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

Lagrangian = Callable[..., jax.Array]
Forces = Callable[..., jax.Array]
Dissipation = Callable[..., jax.Array]
MassKind = Literal["auto", "spd"]

__all__ = [
    "SingularMassMatrixError",
    "accelerations",
    "energy",
    "mass_matrix",
    "momentum",
    "poisson_bracket",
    "vector_field",
]


class SingularMassMatrixError(ValueError):
    """The velocity Hessian ∂²L/∂q̇² cannot be inverted (or is not positive definite
    where it must be), so the Euler–Lagrange equations do not fix the accelerations."""


def _as_time(t, dtype) -> jax.Array:
    return jnp.asarray(t, dtype=dtype)


def _check_state(q: jax.Array, qd: jax.Array) -> None:
    if q.ndim != 1 or qd.shape != q.shape:
        raise ValueError(
            f"`q` has shape {q.shape} and `qd` has shape {qd.shape}; both must be "
            "1-D vectors of the same length (use jax.vmap for batches)."
        )


def _euler_lagrange_terms(lagrangian, q, qd, t, params):
    """∇_q L, ∇_q̇ L, M and C q̇ + ∂_t ∇_q̇ L from one forward-over-reverse pass.

    The gradient ∇_{q,q̇,t} L is linearized once and pushed along the n velocity
    directions (0, e_i, 0). Each push returns the i-th column of M in its q̇-part,
    the i-th row of C = ∂²L/∂q̇∂q in its q-part, and ∂_t ∂L/∂q̇_i in its t-part, so
    C q̇ + ∂_t ∇_q̇ L costs n dot products on top of the n products that M needs
    anyway: n Jacobian-vector products in all, one fewer than a separate product
    along (q̇, 0, 1) for the drift would take.
    """
    n = q.shape[0]

    def grad_l(q_, qd_, t_):
        return jax.grad(lagrangian, argnums=(0, 1, 2))(q_, qd_, t_, params)

    (grad_q, grad_qd, _), push = jax.linearize(grad_l, q, qd, t)
    zeros = jnp.zeros((n, n), dtype=q.dtype)
    eye = jnp.eye(n, dtype=q.dtype)
    mixed_rows, mass, time_rows = jax.vmap(push)(zeros, eye, jnp.zeros(n, t.dtype))
    # Symmetrize: M is a Hessian, and round-off asymmetry would only hurt Cholesky.
    mass = 0.5 * (mass + mass.T)
    return grad_q, grad_qd, mass, mixed_rows @ qd + time_rows


def _generalized_forces(q, qd, t, params, forces, dissipation):
    total = jnp.zeros_like(q)
    if forces is not None:
        total = total + forces(t, q, qd, params)
    if dissipation is not None:
        total = total - jax.grad(dissipation, argnums=1)(q, qd, params)
    return total


def _mass_is_singular(mass: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Whether M is numerically singular, and its smallest eigenvalue.

    M is a Hessian, hence symmetric: its eigenvalues give both tests at once. The
    threshold n·ε·max|λ| is the usual numerical-rank cut-off; below it a solve
    returns round-off amplified into garbage rather than an answer.
    """
    eigenvalues = jnp.linalg.eigvalsh(mass)
    scale = jnp.max(jnp.abs(eigenvalues))
    cutoff = mass.shape[0] * jnp.finfo(mass.dtype).eps * scale
    singular = (jnp.min(jnp.abs(eigenvalues)) <= cutoff) | (scale == 0)
    return singular, jnp.min(eigenvalues)


_SINGULAR_MESSAGE = (
    "the velocity Hessian M = ∂²L/∂q̇² is singular, so the Euler–Lagrange equations do "
    "not determine the accelerations; the Lagrangian must depend on the velocities "
    "with a non-degenerate second derivative (a first-order, velocity-linear "
    "Lagrangian needs the first-order dynamics instead)."
)
_INDEFINITE_MESSAGE = (
    "the velocity Hessian M = ∂²L/∂q̇² is not positive definite although "
    "mass='spd' was requested; pass mass='auto' to allow an indefinite M."
)
_NONFINITE_MESSAGE = (
    "the velocity Hessian M = ∂²L/∂q̇² or the right-hand side contains NaN or inf; "
    "check the state and the Lagrangian's parameters for non-finite values."
)


def _is_traced(*arrays) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in arrays)


def _check_mass(mass, rhs, kind: MassKind):
    """Raise in eager code; inside jit/vmap, attach an `eqx.error_if` check instead."""
    nonfinite = ~(jnp.all(jnp.isfinite(mass)) & jnp.all(jnp.isfinite(rhs)))
    safe = jnp.where(nonfinite, jnp.eye(mass.shape[0], dtype=mass.dtype), mass)
    singular, smallest = _mass_is_singular(safe)
    indefinite = (smallest <= 0) if kind == "spd" else jnp.asarray(False)
    if not _is_traced(mass, rhs):
        if bool(nonfinite):
            raise SingularMassMatrixError(_NONFINITE_MESSAGE)
        if bool(singular):
            raise SingularMassMatrixError(_SINGULAR_MESSAGE)
        if bool(indefinite):
            raise SingularMassMatrixError(_INDEFINITE_MESSAGE)
        return mass
    mass = eqx.error_if(mass, nonfinite, _NONFINITE_MESSAGE)
    mass = eqx.error_if(mass, singular & ~nonfinite, _SINGULAR_MESSAGE)
    return eqx.error_if(mass, indefinite & ~nonfinite, _INDEFINITE_MESSAGE)


def _solve(mass, rhs, kind: MassKind):
    """Solve M x = rhs: Cholesky, and LU when M turns out not to be positive definite.

    A pseudo-inverse is deliberately not used: on a singular M it returns a finite
    but meaningless answer, which the checks in `_check_mass` report instead.

    Under `vmap` both branches are evaluated for every sample, so each branch gets an
    input it can factor (the identity in place of the other branch's M). Otherwise
    the Cholesky of one indefinite M in a batch would put 0 · inf = NaN into the
    gradient of every parameter.
    """
    if kind == "spd":
        return jsl.cho_solve((jnp.linalg.cholesky(mass), True), rhs)
    probe = jnp.linalg.cholesky(jax.lax.stop_gradient(mass))
    positive = jnp.all(jnp.isfinite(probe))
    eye = jnp.eye(mass.shape[0], dtype=mass.dtype)
    cholesky = jnp.linalg.cholesky(jnp.where(positive, mass, eye))
    lu, _, permutation = jax.lax.linalg.lu(jnp.where(positive, eye, mass))
    # Both factorizations as M = P⁻¹ L U, then one pair of triangular solves. Two
    # independent pairs (cho_solve next to solve) hang XLA's CPU runtime on large
    # batches (about 10⁵ states), so the branches share their solves.
    lower = jnp.where(positive, cholesky, jnp.tril(lu, -1) + eye)
    upper = jnp.where(positive, cholesky.T, jnp.triu(lu))
    permuted = jnp.where(positive, rhs, rhs[permutation])
    y = jsl.solve_triangular(lower, permuted, lower=True)
    return jsl.solve_triangular(upper, y, lower=False)


def accelerations(
    lagrangian: Lagrangian,
    q,
    qd,
    t=0.0,
    params: Any = None,
    forces: Forces | None = None,
    dissipation: Dissipation | None = None,
    *,
    mass: MassKind = "auto",
    check: bool = True,
) -> jax.Array:
    """Accelerations q̈ from the Euler–Lagrange equations with generalized forces.

    Solves M q̈ = ∇_q L − C q̇ − ∂_t ∇_q̇ L + Q with Q = forces − ∂D/∂q̇.

    Arguments:
        lagrangian: `lagrangian(q, qd, t, params) -> scalar`.
        q, qd: coordinates and velocities, shape `(n,)`; use `jax.vmap` for batches.
        t: time, for Lagrangians and forces that depend on it explicitly.
        params: non-dynamical parameters passed through to every callable.
        forces: generalized forces `forces(t, q, qd, params) -> (n,)`, or None.
        dissipation: a Rayleigh function `dissipation(q, qd, params) -> scalar`, or None.
        mass: "auto" factors M by Cholesky and falls back to LU when M is not positive
            definite; "spd" requires a positive definite M.
        check: detect a singular, non-finite (or, with "spd", indefinite) M. Raises
            `SingularMassMatrixError` in eager code and an equinox runtime error
            inside compiled code. Training loops may switch it off for speed.

    Returns:
        q̈, shape `(n,)`.

    Example:
        >>> import jax.numpy as jnp
        >>> oscillator = lambda q, qd, t, p: 0.5 * qd @ qd - 0.5 * q @ q
        >>> accelerations(oscillator, jnp.array([1.0]), jnp.array([0.0]))
        Array([-1.], dtype=float32)
    """
    q, qd = jnp.asarray(q), jnp.asarray(qd)
    dtype = jnp.result_type(q, qd, float)
    q, qd = q.astype(dtype), qd.astype(dtype)
    _check_state(q, qd)
    t = _as_time(t, dtype)
    own_solve = getattr(lagrangian, "accelerations", None)
    if own_solve is not None:
        # Lagrangians with structure (a density on a lattice) bring a solve that
        # exploits it; the dense one below would cost O(n³).
        if forces is not None or dissipation is not None:
            raise ValueError(
                f"{type(lagrangian).__name__} solves its own Euler–Lagrange equations "
                "and takes no `forces` or `dissipation`; leave them out."
            )
        return own_solve(q, qd, t, params)
    grad_q, _, mass_matrix_, drift = _euler_lagrange_terms(lagrangian, q, qd, t, params)
    rhs = grad_q - drift + _generalized_forces(q, qd, t, params, forces, dissipation)
    if check:
        mass_matrix_ = _check_mass(mass_matrix_, rhs, mass)
    return _solve(mass_matrix_, rhs, mass)


def mass_matrix(lagrangian: Lagrangian, q, qd, t=0.0, params: Any = None) -> jax.Array:
    """The velocity Hessian M = ∂²L/∂q̇², shape `(n, n)`."""
    q, qd = jnp.asarray(q), jnp.asarray(qd)
    _check_state(q, qd)
    hessian = jax.hessian(lagrangian, argnums=1)(q, qd, _as_time(t, q.dtype), params)
    return 0.5 * (hessian + hessian.T)


def momentum(lagrangian: Lagrangian, q, qd, t=0.0, params: Any = None) -> jax.Array:
    """Canonical momentum p = ∂L/∂q̇."""
    q, qd = jnp.asarray(q), jnp.asarray(qd)
    _check_state(q, qd)
    return jax.grad(lagrangian, argnums=1)(q, qd, _as_time(t, q.dtype), params)


def energy(lagrangian: Lagrangian, q, qd, t=0.0, params: Any = None) -> jax.Array:
    """Energy from the Legendre transform, E = q̇·∂L/∂q̇ − L.

    Conserved along the motion when L has no explicit time dependence and no forces
    act; with a Rayleigh function D, dE/dt = −q̇·∂D/∂q̇.
    """
    q, qd = jnp.asarray(q), jnp.asarray(qd)
    _check_state(q, qd)
    t = _as_time(t, q.dtype)
    value, p = jax.value_and_grad(lagrangian, argnums=1)(q, qd, t, params)
    return qd @ p - value


def poisson_bracket(f: Callable, g: Callable, q, p) -> jax.Array:
    """Canonical Poisson bracket {f, g} = Σ_i ∂f/∂q_i ∂g/∂p_i − ∂f/∂p_i ∂g/∂q_i.

    `f` and `g` are functions `(q, p) -> scalar` of canonical coordinates; with g the
    Hamiltonian, {f, H} is the rate of change of f along the flow.
    """
    q, p = jnp.asarray(q), jnp.asarray(p)
    df_dq, df_dp = jax.grad(f, argnums=(0, 1))(q, p)
    dg_dq, dg_dp = jax.grad(g, argnums=(0, 1))(q, p)
    return df_dq @ dg_dp - df_dp @ dg_dq


def vector_field(
    lagrangian: Lagrangian,
    forces: Forces | None = None,
    dissipation: Dissipation | None = None,
    *,
    mass: MassKind = "auto",
    check: bool = True,
) -> Callable[[Any, jax.Array, Any], jax.Array]:
    """The first-order state equation y' = f(t, y, params) with y = (q, q̇).

    The returned function has the `(t, y, args)` signature of `diffrax.ODETerm`, with
    `args` the Lagrangian's parameters.
    """

    def field(t, y, params):
        n = y.shape[-1] // 2
        q, qd = y[:n], y[n:]
        qdd = accelerations(
            lagrangian, q, qd, t, params, forces, dissipation, mass=mass, check=check
        )
        return jnp.concatenate([qd, qdd])

    return field


def split_state(y) -> tuple[np.ndarray | jax.Array, np.ndarray | jax.Array]:
    """Split a state `(..., 2n)` into coordinates and velocities `(..., n)` each."""
    n = y.shape[-1] // 2
    return y[..., :n], y[..., n:]
