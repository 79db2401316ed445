"""The O(N) field accelerations against the dense N × N Euler–Lagrange solve.

Sizes above a few hundred sites exercise the batched evaluation of the per-site
terms (and its remainder batch); float32 at 2^17 sites exercises conjugate
gradients where a tolerance that grows with N would break down.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lddnn
from lddnn import field, lattice


def coupled_density(u, v, t, params):
    """Nonlinear in φ, velocity-coupled across the neighbourhood, time dependent."""
    centre = u.shape[0] // 2
    kinetic = 0.5 * jnp.sum(v**2) + 0.1 * v[0] * v[-1] * jnp.cos(u[centre])
    return (
        kinetic
        + 0.05 * v[centre] ** 2 * u[0] ** 2
        - 0.5 * (u[-1] - u[centre]) ** 2
        - (1 - jnp.cos(u[centre]))
        + 0.01 * t * v[centre] * u[centre]
    )


def random_state(shape, seed=0, dtype=jnp.float64):
    phi = jax.random.normal(jax.random.key(seed), shape, dtype)
    phid = jax.random.normal(jax.random.key(seed + 1), shape, dtype)
    return phi, phid


def relative_error(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize(
    ("lat", "solvers"),
    [
        (lattice.chain(200), ("banded", "cg")),
        (lattice.chain(150, boundary="fixed"), ("banded", "cg")),
        (lattice.grid((12, 13), boundary=("fixed", "periodic")), ("cg", "bicgstab")),
    ],
)
def test_batched_site_terms_match_dense_solve(lat, solvers):
    phi, phid = random_state(lat.shape)
    dense = lddnn.accelerations(
        field.dense_reference(coupled_density, lat),
        phi.reshape(-1),
        phid.reshape(-1),
        0.3,
    )
    for solver in solvers:
        ours = field.field_accelerations(
            coupled_density, lat, phi, phid, 0.3, solver=solver
        )
        assert relative_error(ours.reshape(-1), dense) < 1e-10, solver


def test_gradient_through_conjugate_gradients_matches_dense():
    lat = lattice.grid((6, 5))
    phi, phid = random_state(lat.shape, seed=2)

    def density(u, v, t, stiffness):
        return coupled_density(u, v, t, None) - stiffness * jnp.sum(u**4)

    def ours(stiffness):
        phidd = field.field_accelerations(
            density, lat, phi, phid, 0.0, stiffness, solver="cg"
        )
        return jnp.sum(jnp.sin(phidd))

    def dense(stiffness):
        reference = field.dense_reference(density, lat)
        phidd = lddnn.accelerations(
            reference, phi.reshape(-1), phid.reshape(-1), 0.0, stiffness
        )
        return jnp.sum(jnp.sin(phidd))

    assert abs(jax.grad(ours)(0.2) - jax.grad(dense)(0.2)) < 1e-9


def test_conjugate_gradients_step_limit_is_an_error():
    lat = lattice.grid((8, 8))
    phi, phid = random_state(lat.shape)
    with pytest.raises(Exception, match="did not reach the tolerance"):
        field.field_accelerations(
            coupled_density, lat, phi, phid, solver="cg", max_steps=1
        )


def test_float32_conjugate_gradients_on_a_long_chain():
    lat = lattice.chain(2**17)
    phi, phid = random_state(lat.shape, dtype=jnp.float32)
    banded = field.field_accelerations(coupled_density, lat, phi, phid, solver="banded")
    krylov = field.field_accelerations(coupled_density, lat, phi, phid, solver="cg")
    assert krylov.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(krylov)))
    assert relative_error(krylov, banded) < 1e-4


def test_conjugate_gradients_at_rest_in_equilibrium():
    lat = lattice.grid((5, 5))
    zero = jnp.zeros(lat.shape)

    def density(u, v, t, params):
        return 0.5 * jnp.sum(v**2) - 0.5 * (u[-1] - u[2]) ** 2

    phidd = field.field_accelerations(density, lat, zero, zero, solver="cg")
    assert np.all(np.asarray(phidd) == 0)
