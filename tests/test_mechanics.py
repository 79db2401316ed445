"""Euler–Lagrange machinery against hand-derived equations of motion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lddnn


def double_pendulum(q, qd, t, params):
    theta1, theta2 = q
    omega1, omega2 = qd
    kinetic = omega1**2 + 0.5 * omega2**2 + omega1 * omega2 * jnp.cos(theta1 - theta2)
    potential = -2 * 9.8 * jnp.cos(theta1) - 9.8 * jnp.cos(theta2)
    return kinetic - potential


def double_pendulum_by_hand(q, qd):
    (t1, t2), (w1, w2) = q, qd
    a1, a2 = 0.5 * np.cos(t1 - t2), np.cos(t1 - t2)
    f1 = -0.5 * w2**2 * np.sin(t1 - t2) - 9.8 * np.sin(t1)
    f2 = w1**2 * np.sin(t1 - t2) - 9.8 * np.sin(t2)
    det = 1 - a1 * a2
    return np.array([(f1 - a1 * f2) / det, (f2 - a2 * f1) / det])


def test_double_pendulum_matches_hand_derivation():
    rng = np.random.default_rng(0)
    for _ in range(5):
        q, qd = rng.uniform(-3, 3, 2), rng.uniform(-2, 2, 2)
        qdd = lddnn.accelerations(double_pendulum, q, qd)
        np.testing.assert_allclose(qdd, double_pendulum_by_hand(q, qd), rtol=1e-12)


def test_explicit_time_dependence_and_forces():
    # L = ½q̇² − ½(1 + t)q² + sin(t) q q̇: the gauge term contributes −cos(t) q.
    lagrangian = lambda q, qd, t, p: (
        0.5 * qd @ qd - 0.5 * (1 + t) * q @ q + jnp.sin(t) * q @ qd
    )
    q, qd, t = jnp.array([0.4, -1.2]), jnp.array([0.3, 0.1]), 0.7
    forces = lambda t, q, qd, p: jnp.array([1.0, 2.0]) * t
    damping = lambda q, qd, p: 0.25 * qd @ qd
    qdd = lddnn.accelerations(lagrangian, q, qd, t, None, forces, damping)
    expected = -(1 + t) * q - np.cos(t) * q + np.array([1.0, 2.0]) * t - 0.5 * qd
    np.testing.assert_allclose(qdd, expected, rtol=1e-12)


def test_energy_and_momentum_of_a_particle():
    lagrangian = lambda q, qd, t, p: 1.5 * qd @ qd - 2.0 * q @ q
    q, qd = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
    np.testing.assert_allclose(lddnn.momentum(lagrangian, q, qd), 3.0 * qd)
    np.testing.assert_allclose(lddnn.energy(lagrangian, q, qd), 1.5 * 1.25 + 2.0 * 5.0)


def test_poisson_bracket_is_canonical():
    q, p = jnp.array([0.3, -0.2]), jnp.array([1.1, 0.4])
    first_q = lambda q, p: q[0]
    first_p = lambda q, p: p[0]
    assert lddnn.poisson_bracket(first_q, first_p, q, p) == pytest.approx(1.0)
    hamiltonian = lambda q, p: 0.5 * p @ p + 0.5 * q @ q
    # {q, H} = p and {p, H} = −q: Hamilton's equations.
    assert lddnn.poisson_bracket(first_q, hamiltonian, q, p) == pytest.approx(p[0])
    assert lddnn.poisson_bracket(first_p, hamiltonian, q, p) == pytest.approx(-q[0])


def test_indefinite_mass_uses_lu():
    lagrangian = lambda q, qd, t, p: 0.5 * (qd[0] ** 2 - qd[1] ** 2) - 0.5 * q @ q
    qdd = lddnn.accelerations(lagrangian, jnp.array([1.0, 2.0]), jnp.zeros(2))
    np.testing.assert_allclose(qdd, [-1.0, 2.0], rtol=1e-12)
    with pytest.raises(lddnn.SingularMassMatrixError, match="positive definite"):
        lddnn.accelerations(
            lagrangian, jnp.array([1.0, 2.0]), jnp.zeros(2), mass="spd"
        )


def test_singular_mass_is_reported_eagerly_and_under_jit():
    velocity_linear = lambda q, qd, t, p: q @ qd - 0.5 * q @ q
    q, qd = jnp.array([1.0, 2.0]), jnp.array([0.1, 0.2])
    with pytest.raises(lddnn.SingularMassMatrixError, match="singular"):
        lddnn.accelerations(velocity_linear, q, qd)
    compiled = jax.jit(lambda q, qd: lddnn.accelerations(velocity_linear, q, qd))
    with pytest.raises(Exception, match="singular"):
        jax.block_until_ready(compiled(q, qd))


def test_nonfinite_state_is_reported():
    lagrangian = lambda q, qd, t, p: 0.5 * qd @ qd - 0.5 * q @ q
    with pytest.raises(lddnn.SingularMassMatrixError, match="NaN"):
        lddnn.accelerations(lagrangian, jnp.array([jnp.nan]), jnp.array([0.0]))


def test_mismatched_shapes_are_refused():
    lagrangian = lambda q, qd, t, p: 0.5 * qd @ qd
    with pytest.raises(ValueError, match="same length"):
        lddnn.accelerations(lagrangian, jnp.zeros(2), jnp.zeros(3))


def test_gradient_stays_finite_when_one_mass_in_a_batch_is_indefinite():
    # L = ½ a q̇₀² + ½ q̇₁² − ½ q·q: M = diag(a, 1) is indefinite for a < 0 only.
    def loss(a, signs):
        lagrangian = lambda q, qd, t, s: 0.5 * (s * a * qd[0] ** 2 + qd[1] ** 2) - (
            0.5 * q @ q
        )
        one = lambda s: lddnn.accelerations(
            lagrangian, jnp.ones(2), jnp.zeros(2), 0.0, s, check=False
        )
        return jnp.sum(jax.vmap(one)(signs))

    value, grad = jax.value_and_grad(loss)(2.0, jnp.array([1.0, -1.0]))
    # q̈₀ = −1/(s a): −0.5 + 0.5, and d/da = 1/(s a²) summed: 0.25 − 0.25.
    assert np.isfinite(grad)
    np.testing.assert_allclose([value, grad], [-2.0, 0.0], atol=1e-12)
