"""Euler–Lagrange dynamics of a field whose Lagrangian is a sum of local densities.

With L = Σ_i ℓ(φ_{I_i}, φ̇_{I_i}, t) on a `Lattice`, the accelerations solve

    M φ̈ = ∇_φ L − C φ̇ − ∂_t ∇_φ̇ L,   M = ∂²L/∂φ̇²,  C = ∂²L/∂φ̇∂φ,

exactly as for a mechanical Lagrangian, but M is sparse: M_ab ≠ 0 only when sites a
and b share a neighbourhood. Every term is assembled from per-site quantities of the
density, each costing a fixed amount of work per site:

* one linearization of ∇ℓ at each site, pushed along the site's k velocity
  directions, gives the local Hessian H_i = ∂²ℓ/∂φ̇_I² (the columns) and the local
  mixed block (whose contraction with φ̇_I is the site's share of C φ̇);
* `Lattice.scatter` adds the local gradients and drifts onto the sites (the
  right-hand side), and M x = scatter(H_i · gather(x)) is applied without forming M.

The solve is banded and direct on 1-D grids (LAPACK's band LU through SciPy) and a
preconditioned Krylov method on other lattices (conjugate gradients, or lineax's
GMRES and BiCGStab), so the whole acceleration costs O(N) time and memory; no N × N
matrix appears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.linalg

from lddnn.lattice import Density, Lattice

Solver = Literal["auto", "banded", "cg", "gmres", "bicgstab"]
SOLVERS = ("auto", "banded", "cg", "gmres", "bicgstab")

__all__ = [
    "SOLVERS",
    "LatticeLagrangian",
    "LatticeMass",
    "field_accelerations",
    "field_energy",
    "field_energy_density",
    "field_lagrangian",
    "mass_operator",
]


def _check_stencil(density, lattice: Lattice) -> None:
    """A learned density knows how many sites its neighbourhood has; refuse a
    lattice whose neighbourhoods differ (hand-written densities cannot tell)."""
    size = getattr(density, "stencil_size", None)
    if size is not None and size != lattice.stencil_size:
        raise ValueError(
            f"The density takes neighbourhoods of {size} sites, but this lattice's "
            f"have {lattice.stencil_size}; use a lattice with the stencil the density "
            "was built for, or build the density with "
            f"stencil_size={lattice.stencil_size}."
        )


def _prepare(density, lattice: Lattice, phi, phid, t):
    _check_stencil(density, lattice)
    phi, phid = jnp.asarray(phi), jnp.asarray(phid)
    dtype = jnp.result_type(phi, phid, float)
    rest = lattice.field_shape(phi)
    if jnp.shape(phid) != jnp.shape(phi):
        raise ValueError(
            f"`phid` has shape {jnp.shape(phid)} but `phi` has shape "
            f"{jnp.shape(phi)}; the field and its velocity must match."
        )
    return phi.astype(dtype), phid.astype(dtype), jnp.asarray(t, dtype), rest


def _site_values(density: Density, lattice: Lattice, phi, phid, t, params):
    local = jax.vmap(density, in_axes=(0, 0, None, None))
    return local(lattice.gather(phi), lattice.gather(phid), t, params)


def field_lagrangian(density: Density, lattice: Lattice, phi, phid, t=0.0, params=None):
    """The total Lagrangian L = Σ_i ℓ(φ_{I_i}, φ̇_{I_i}, t, params), a scalar.

    `density(phi, phid, t, params) -> scalar` receives one neighbourhood's values,
    shape (k,) for a scalar field or (k, c) for c components, in the lattice's
    stencil order.
    """
    phi, phid, t, _ = _prepare(density, lattice, phi, phid, t)
    return jnp.sum(_site_values(density, lattice, phi, phid, t, params))


def field_energy_density(
    density: Density, lattice: Lattice, phi, phid, t=0.0, params=None
) -> jax.Array:
    """The energy of each neighbourhood, e_i = φ̇_{I_i} · ∂ℓ_i/∂φ̇_{I_i} − ℓ_i, with
    the lattice's shape; it sums to the energy E = φ̇ · ∂L/∂φ̇ − L."""
    phi, phid, t, _ = _prepare(density, lattice, phi, phid, t)

    def local(u, v):
        value, momentum = jax.value_and_grad(density, argnums=1)(u, v, t, params)
        return jnp.sum(v * momentum) - value

    values = jax.vmap(local)(lattice.gather(phi), lattice.gather(phid))
    return jnp.reshape(values, lattice.shape)


def field_energy(density: Density, lattice: Lattice, phi, phid, t=0.0, params=None):
    """The total energy E = Σ_i e_i (conserved when ℓ has no explicit time)."""
    return jnp.sum(field_energy_density(density, lattice, phi, phid, t, params))


# -------------------------------------------------------------- per-site terms


def _site_terms(density: Density, u, v, t, params):
    """A neighbourhood's force ∂ℓ/∂φ_I − (mixed block)·φ̇_I − ∂_t ∂ℓ/∂φ̇_I, shape
    (k, *rest), and its velocity Hessian, shape (k·c, k·c), from one linearization
    of ∇ℓ pushed along the k·c velocity directions.

    The push along velocity direction β returns ∂(∇ℓ)/∂v_β: its v-part is column β
    of the Hessian, its u-part holds ∂²ℓ/∂u_α∂v_β (whose sum against v_α is row β of
    the mixed term), and its t-part is ∂²ℓ/∂t∂v_β.
    """
    size = u.size

    def gradient(u_, v_, t_):
        return jax.grad(density, argnums=(0, 1, 2))(u_, v_, t_, params)

    (grad_u, _, _), push = jax.linearize(gradient, u, v, t)
    directions = jnp.eye(size, dtype=u.dtype).reshape((size,) + u.shape)
    zeros = jnp.zeros_like(directions)
    no_time = jnp.zeros(size, t.dtype)
    mixed, hessian, time_part = jax.vmap(push)(zeros, directions, no_time)
    drift = mixed.reshape(size, size) @ v.reshape(size) + time_part
    hessian = hessian.reshape(size, size)
    # A Hessian is symmetric; round-off asymmetry would only hurt the solvers.
    hessian = 0.5 * (hessian + hessian.T)
    return grad_u - drift.reshape(u.shape), hessian


class LatticeMass(eqx.Module):
    """The velocity Hessian M = Σ_i P_iᵀ H_i P_i of a lattice Lagrangian, kept as
    its per-site blocks H_i (N, k·c, k·c); P_i picks neighbourhood I_i."""

    lattice: Lattice
    blocks: jax.Array
    rest: tuple[int, ...] = eqx.field(static=True)

    @property
    def components(self) -> int:
        return int(np.prod(self.rest))

    def matvec(self, x: jax.Array) -> jax.Array:
        """M x for x of shape (N, *rest), in O(N k² c²)."""
        local = self.lattice.gather(x).reshape(self.lattice.size, -1)
        product = jnp.einsum("nij,nj->ni", self.blocks, local)
        product = product.reshape((self.lattice.size, -1) + self.rest)
        return self.lattice.scatter(product)

    def diagonal_blocks(self) -> jax.Array:
        """The c × c blocks on M's diagonal, (N, c, c)."""
        c, k = self.components, self.lattice.stencil_size
        blocks = self.blocks.reshape(-1, k, c, k, c)
        own = jnp.einsum("nacad->nacd", blocks)
        return self.lattice.scatter(own)

    def diagonals(self) -> dict[tuple[int, ...], jax.Array]:
        """M in diagonal storage (grids only): for each offset d between sites,
        the blocks M[a, a + d] at every site a, shape (*shape, c, c)."""
        lattice, c = self.lattice, self.components
        k = lattice.stencil_size
        blocks = self.blocks.reshape((lattice.size, k, c, k, c))
        result: dict[tuple[int, ...], jax.Array] = {}
        for alpha, o_alpha in enumerate(lattice.offsets):
            # Site s = a − o_α contributes at row a; reading the site's blocks at
            # offset −o_α (zero outside fixed boundaries) moves them onto row a.
            back = tuple(-o for o in o_alpha)
            moved = _shifted(lattice, blocks[:, alpha], back)
            for beta, o_beta in enumerate(lattice.offsets):
                d = tuple(b - a for a, b in zip(o_alpha, o_beta))
                term = moved[:, :, beta]
                result[d] = result[d] + term if d in result else term
        shape = lattice.shape + (c, c)
        return {d: jnp.reshape(v, shape) for d, v in result.items()}

    def to_dense(self) -> jax.Array:
        """M as a dense (N·c, N·c) matrix; for tests and small lattices only."""
        n = self.lattice.size * self.components
        columns = jax.vmap(
            lambda e: self.matvec(e.reshape((self.lattice.size,) + self.rest))
        )(jnp.eye(n, dtype=self.blocks.dtype))
        return columns.reshape(n, n).T


def _shifted(lattice: Lattice, values: jax.Array, offset: tuple[int, ...]):
    """values[a + offset] at every grid site a (periodic wrap, or 0 past a fixed
    boundary); values has shape (N, ...)."""
    rest = values.shape[1:]
    field = values.reshape(lattice.shape + rest)
    for axis, (o, n, wraps) in enumerate(zip(offset, lattice.shape, lattice.periodic)):
        if o == 0:
            continue
        field = jnp.roll(field, -o, axis=axis)
        if not wraps:
            index = jnp.arange(n)
            inside = (index + o >= 0) & (index + o < n)
            mask = inside.reshape((n,) + (1,) * (field.ndim - axis - 1))
            field = jnp.where(mask, field, 0)
    return field.reshape((lattice.size,) + rest)


# Sites per batch when the per-site terms run on a CPU. Vectorised over all N sites
# at once, the derivative passes of the density stream (N, width) intermediates
# through main memory; in batches of ~128 they stay in cache, which made the site
# terms of a 2 × 64 MLP density 3–4× faster at N = 2^16 (2 cores). Accelerators
# keep the single vectorised pass, which their parallelism needs.
_CPU_SITE_BATCH = 128


def _all_site_terms(density, u, v, t, params):
    """`_site_terms` at every neighbourhood, u and v of shape (N, k, *rest)."""

    def one(uv):
        return _site_terms(density, uv[0], uv[1], t, params)

    if jax.default_backend() == "cpu" and u.shape[0] > _CPU_SITE_BATCH:
        return jax.lax.map(one, (u, v), batch_size=_CPU_SITE_BATCH)
    return jax.vmap(one)((u, v))


def _terms(density, lattice, phi, phid, t, params, rest):
    local_force, blocks = _all_site_terms(
        density, lattice.gather(phi), lattice.gather(phid), t, params
    )
    rhs = lattice.scatter(local_force)
    return rhs, LatticeMass(lattice, blocks, rest)


def mass_operator(density: Density, lattice: Lattice, phi, phid, t=0.0, params=None):
    """The velocity Hessian as a `LatticeMass` (its per-site blocks)."""
    phi, phid, t, rest = _prepare(density, lattice, phi, phid, t)
    flat = (lattice.size,) + rest
    _, mass = _terms(
        density, lattice, phi.reshape(flat), phid.reshape(flat), t, params, rest
    )
    return mass


# --------------------------------------------------------------------- solvers


def default_tolerance(dtype) -> float:
    """The Krylov solvers' default relative (and absolute) tolerance."""
    return 1e-12 if jnp.dtype(dtype) == jnp.float64 else 1e-6


def _band_matrix(diagonals: dict, n: int, c: int, periodic: bool):
    """LAPACK band storage of M (general, (l, u) = bandwidths) from its diagonals.

    A periodic chain couples site 0 to site n − 1, which would put entries in the
    corners; ordering the sites 0, n−1, 1, n−2, 2, … instead keeps every pair of
    neighbours within 2|d| + 1 places, so M stays banded.
    """
    order = np.arange(n)
    if periodic:
        order = np.empty(n, dtype=np.int64)
        order[0::2] = np.arange((n + 1) // 2)
        order[1::2] = n - 1 - np.arange(n // 2)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    reach = max(abs(d) for d in diagonals)
    width = c * ((2 * reach + 1) if periodic else reach) + c - 1
    band = np.zeros((2 * width + 1, n * c), dtype=next(iter(diagonals.values())).dtype)
    sites = np.arange(n)
    for d, blocks in diagonals.items():
        target = sites + d
        valid = (target >= 0) & (target < n) if not periodic else slice(None)
        target = target % n
        for ci in range(c):
            for cj in range(c):
                rows = (position[sites] * c + ci)[valid]
                cols = (position[target] * c + cj)[valid]
                band[width + rows - cols, cols] += np.asarray(blocks)[valid, ci, cj]
    return band, width, position


def _banded_solve_host(diagonals, rhs, periodic: bool):
    """Solve M x = rhs on the host with LAPACK's band LU; NaN where M is singular."""
    offsets = sorted(diagonals)
    n, c = rhs.shape[0], rhs.shape[1]
    band, width, position = _band_matrix(
        {d[0]: np.asarray(diagonals[d]) for d in offsets}, n, c, periodic
    )
    ordered = np.empty_like(rhs)
    ordered[position] = rhs
    try:
        solution = scipy.linalg.solve_banded(
            (width, width), band, ordered.reshape(n * c), check_finite=False
        )
    except (np.linalg.LinAlgError, ValueError):
        return np.full_like(rhs, np.nan)
    return solution.reshape(n, c)[position]


# Arrays cross to the host callback as raw 32-bit words. JAX hands a callback its
# arguments as arrays made under the precision setting of the thread that runs it,
# and with compiled code dispatched asynchronously that is a runtime thread outside
# any `jax.enable_x64` scope of the caller: float64 data would arrive cut to float32.
# Integer words of 32 bits survive either setting exactly.


def _bits_dtype(dtype) -> tuple[Any, int]:
    words = jnp.dtype(dtype).itemsize // 4
    return jnp.uint32, words


def _as_bits(x: jax.Array) -> jax.Array:
    """x as (..., words) uint32, bit for bit."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return bits if bits.ndim > x.ndim else bits[..., None]


def _from_bits(bits, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(bits, np.uint32)).view(dtype)[..., 0]


def _to_bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x)[..., None].view(np.uint32)


def _banded_solve(mass: LatticeMass, rhs: jax.Array) -> jax.Array:
    lattice = mass.lattice
    c = mass.components
    diagonals = mass.diagonals()
    periodic = lattice.periodic[0]

    dtype = rhs.dtype

    def host(diagonals_, rhs_):
        values = {
            d: _from_bits(v, dtype) for d, v in zip(sorted(diagonals), diagonals_)
        }
        solution = _banded_solve_host(values, _from_bits(rhs_, dtype), periodic)
        return _to_bits(solution.astype(dtype))

    def solve(_, b):
        flat = b.reshape(lattice.size, c)
        bits = _bits_dtype(dtype)
        result = jax.pure_callback(
            host,
            jax.ShapeDtypeStruct(flat.shape + (bits[1],), bits[0]),
            [
                _as_bits(diagonals[d].reshape(lattice.size, c, c))
                for d in sorted(diagonals)
            ],
            _as_bits(flat),
            vmap_method="sequential",
        )
        return jax.lax.bitcast_convert_type(result, dtype).reshape(b.shape)

    # The solve is a host call; custom_linear_solve differentiates through it with
    # M's own matrix-vector product and one more solve (M is symmetric).
    return jax.lax.custom_linear_solve(
        mass.matvec, rhs, solve, solve, symmetric=True
    )


def _block_jacobi(mass: LatticeMass) -> Callable[[jax.Array], jax.Array]:
    """Block-Jacobi preconditioning: applies the inverse of M's c × c diagonal
    blocks (Jacobi when c = 1)."""
    inverse = jnp.linalg.inv(mass.diagonal_blocks())
    rest = mass.rest

    def apply(x):
        flat = x.reshape(x.shape[0], -1)
        return jnp.einsum("nij,nj->ni", inverse, flat).reshape(x.shape[:1] + rest)

    return apply


def _conjugate_gradients(mass: LatticeMass, rhs, rtol, atol, max_steps):
    """Preconditioned conjugate gradients for M x = rhs (M symmetric positive
    definite), until both the residual and the last step are small:
    max|M x − rhs| ≤ atol + rtol · max|rhs| and max|Δx| ≤ atol + rtol · max|x|.

    Written here rather than taken from lineax: lineax 0.1.1 declares a breakdown
    whenever pᵀMp < 100 ε N · rᵀz, a bound that grows with N and in float32 is
    crossed by every well-conditioned system of more than ~10^5 sites.
    """
    precondition = _block_jacobi(mass)

    def solve(matvec, b):
        tolerance = atol + rtol * jnp.max(jnp.abs(b))

        def converged(x, r, change):
            # An exactly zero residual (e.g. rhs = 0 at the start x = 0) needs no step.
            residual = jnp.max(jnp.abs(r))
            small_step = change <= atol + rtol * jnp.max(jnp.abs(x))
            return (residual <= tolerance) & (small_step | (residual == 0))

        def unfinished(state):
            x, r, _, gamma, step, change = state
            return ~converged(x, r, change) & (step < max_steps) & (gamma > 0)

        def iterate(state):
            x, r, p, gamma, step, _ = state
            product = matvec(p)
            alpha = gamma / jnp.vdot(p, product)
            x, r = x + alpha * p, r - alpha * product
            z = precondition(r)
            gamma_next = jnp.vdot(r, z)
            p_next = z + (gamma_next / gamma) * p
            return x, r, p_next, gamma_next, step + 1, jnp.max(jnp.abs(alpha * p))

        z = precondition(b)
        change = jnp.asarray(jnp.inf, b.dtype)
        start = (jnp.zeros_like(b), b, z, jnp.vdot(b, z), 0, change)
        x, r, *_, change = jax.lax.while_loop(unfinished, iterate, start)
        return x, converged(x, r, change)

    # custom_linear_solve differentiates through the loop with one more solve.
    solution, converged = jax.lax.custom_linear_solve(
        mass.matvec, rhs, solve, symmetric=True, has_aux=True
    )
    return eqx.error_if(
        solution,
        ~converged,
        f"Conjugate gradients did not reach the tolerance within {max_steps} steps: "
        "the velocity Hessian M = ∂²L/∂φ̇² is singular, not positive definite or "
        "badly conditioned; use solver='gmres' for an indefinite M, or raise "
        "`max_steps`.",
    )


def _krylov_solve(mass, rhs, solver: str, rtol, atol, max_steps):
    if solver == "cg":
        return _conjugate_gradients(mass, rhs, rtol, atol, max_steps)
    structure = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)
    operator = lx.FunctionLinearOperator(
        mass.matvec, structure, tags=(lx.symmetric_tag,)
    )
    method = {"gmres": lx.GMRES, "bicgstab": lx.BiCGStab}[solver]
    precondition = lx.FunctionLinearOperator(
        _block_jacobi(mass),
        structure,
        tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
    )
    solution = lx.linear_solve(
        operator,
        rhs,
        method(rtol=rtol, atol=atol, max_steps=max_steps),
        options={"preconditioner": precondition},
        throw=True,
    )
    return solution.value


_NONFINITE = (
    "the field accelerations are NaN or inf: the velocity Hessian M = ∂²L/∂φ̇² is "
    "singular or not positive definite (a density linear in φ̇ needs first-order "
    "dynamics; an indefinite M needs solver='gmres'), or the state is non-finite."
)


def _resolve_solver(lattice: Lattice, solver: str) -> str:
    if solver not in SOLVERS:
        known = ", ".join(SOLVERS)
        raise ValueError(f"Unknown solver {solver!r}; choose one of {known}.")
    one_dimensional = lattice.ndim == 1 and not lattice.is_graph
    if solver == "banded" and not one_dimensional:
        raise ValueError(
            "solver='banded' works on 1-D grids only; use 'cg' (symmetric positive "
            "definite M) or 'gmres' on 2-D grids and graphs."
        )
    if solver == "auto":
        return "banded" if one_dimensional else "cg"
    return solver


def field_accelerations(
    density: Density,
    lattice: Lattice,
    phi,
    phid,
    t=0.0,
    params: Any = None,
    *,
    solver: Solver = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 1000,
) -> jax.Array:
    """Field accelerations φ̈ from the Euler–Lagrange equations, in O(N).

    Solves M φ̈ = ∇_φ L − C φ̇ − ∂_t ∇_φ̇ L for L = Σ_i ℓ(φ_{I_i}, φ̇_{I_i}, t, params).

    Arguments:
        density: `density(phi, phid, t, params) -> scalar` on one neighbourhood,
            (k,) or (k, c) values in the lattice's stencil order.
        lattice: the `Lattice`.
        phi, phid: the field and its velocity, shape `lattice.shape` (+ (c,)).
        t: time, for densities that depend on it.
        params: passed through to the density.
        solver: "banded" (direct band LU, 1-D grids), "cg" (conjugate gradients,
            M symmetric positive definite), "gmres" or "bicgstab" (any invertible
            M); the Krylov methods are preconditioned with M's diagonal blocks.
            "auto" is "banded" on 1-D grids and "cg" otherwise.
        rtol, atol: Krylov tolerances, on the max-norm of the residual relative to
            the right-hand side; default 1e-12 in float64 and 1e-6 in float32.
        max_steps: Krylov iteration limit. Reaching it is an error, not a silent
            inaccurate answer.

    Returns:
        φ̈ with the shape of `phi`.

    Raises:
        An equinox runtime error (also in eager code) when a Krylov solve does not
        converge or the result is not finite (singular or indefinite M).
    """
    phi, phid, t, rest = _prepare(density, lattice, phi, phid, t)
    method = _resolve_solver(lattice, solver)
    tolerance = default_tolerance(phi.dtype)
    rtol = tolerance if rtol is None else rtol
    atol = tolerance if atol is None else atol
    flat = (lattice.size,) + rest
    rhs, mass = _terms(
        density, lattice, phi.reshape(flat), phid.reshape(flat), t, params, rest
    )
    if method == "banded":
        phidd = _banded_solve(mass, rhs)
    else:
        phidd = _krylov_solve(mass, rhs, method, rtol, atol, max_steps)
    phidd = eqx.error_if(phidd, ~jnp.all(jnp.isfinite(phidd)), _NONFINITE)
    return phidd.reshape(phi.shape)


class LatticeLagrangian(eqx.Module):
    """A local density on a lattice, seen as one Lagrangian of the flattened field.

    `model(q, qd, t, params)` with q = φ flattened to (N·c,) returns the total
    Lagrangian, so every tool for mechanical Lagrangians (rollouts, training,
    energies) applies; its `accelerations` method is the O(N) solve, which
    `lddnn.accelerations` uses in place of the dense one.
    """

    density: Any
    lattice: Lattice
    components: int | None = eqx.field(static=True, default=None)
    solver: str = eqx.field(static=True, default="auto")

    def _field(self, q):
        rest = () if self.components is None else (self.components,)
        return jnp.reshape(q, self.lattice.shape + rest)

    def __call__(self, q, qd, t=0.0, params=None):
        return field_lagrangian(
            self.density, self.lattice, self._field(q), self._field(qd), t, params
        )

    def accelerations(self, q, qd, t=0.0, params=None, **options):
        phidd = field_accelerations(
            self.density,
            self.lattice,
            self._field(q),
            self._field(qd),
            t,
            params,
            solver=options.pop("solver", self.solver),
            **options,
        )
        return jnp.reshape(phidd, jnp.shape(q))

    def on(self, lattice: Lattice) -> LatticeLagrangian:
        """The same density on another lattice (e.g. a larger grid)."""
        return LatticeLagrangian(self.density, lattice, self.components, self.solver)


def dense_reference(
    density: Density, lattice: Lattice, components: int | None = None
) -> Callable:
    """The total Lagrangian as a plain function of the flattened field, which
    `lddnn.accelerations` solves with the dense N × N velocity Hessian; the
    independent reference of the tests (and the cost that `field_accelerations`
    avoids)."""
    total = LatticeLagrangian(density, lattice, components)
    return lambda q, qd, t=0.0, params=None: total(q, qd, t, params)
