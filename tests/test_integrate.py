"""Rollouts against analytic solutions, convergence orders and energy behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lddnn
from lddnn.integrate import SOLVERS, IntegrationError, rollout
from lddnn.systems import HARMONIC_OSCILLATOR, PENDULUM


def unit_oscillator(q, qd, t, params):
    return 0.5 * qd @ qd - 0.5 * q @ q


# Error bounds at the steps used below: the adaptive solvers run at rtol = 1e-10; at
# ω dt ≈ 0.03, RK4's error is ~ (ω dt)⁴ and the variational integrator's ~ (ω dt)².
ORACLE_TOLERANCE = {
    "dopri5": 1e-8,
    "tsit5": 1e-8,
    "dopri8": 1e-8,
    "rk4": 2e-7,
    "variational": 1e-3,
}


@pytest.mark.parametrize("solver", SOLVERS)
def test_harmonic_oscillator_matches_analytic_solution(solver):
    params = HARMONIC_OSCILLATOR.params(m=0.5, k=2.0)  # ω = 2
    q0 = jnp.array([[1.0], [-0.3]])
    qd0 = jnp.array([[0.0], [0.8]])
    t = jnp.linspace(0.0, 2 * jnp.pi, 21)
    q, qd = rollout(
        HARMONIC_OSCILLATOR.lagrangian,
        q0,
        qd0,
        t,
        params,
        solver=solver,
        rtol=1e-10,
        atol=1e-10,
        dt=float(t[1] - t[0]) / 20,
    )
    assert q.shape == qd.shape == (2, 21, 1)
    phase = 2 * t[None, :, None]
    expected_q = q0[:, None] * jnp.cos(phase) + qd0[:, None] / 2 * jnp.sin(phase)
    expected_qd = -2 * q0[:, None] * jnp.sin(phase) + qd0[:, None] * jnp.cos(phase)
    tolerance = ORACLE_TOLERANCE[solver]
    np.testing.assert_allclose(q, expected_q, atol=tolerance)
    np.testing.assert_allclose(qd, expected_qd, atol=2 * tolerance)


def fitted_order(solver, steps):
    """Slope of log(error at t = 2) against log(dt) on a large-amplitude pendulum."""
    params = PENDULUM.params()
    q0, qd0, t = jnp.array([1.0]), jnp.array([0.5]), jnp.array([0.0, 2.0])
    exact_q, exact_qd = rollout(
        PENDULUM.lagrangian, q0, qd0, t, params, solver="dopri8", rtol=1e-13, atol=1e-13
    )
    errors = []
    for dt in steps:
        q, qd = rollout(PENDULUM.lagrangian, q0, qd0, t, params, solver=solver, dt=dt)
        errors.append(abs(q[-1, 0] - exact_q[-1, 0]) + abs(qd[-1, 0] - exact_qd[-1, 0]))
    return np.polyfit(np.log(steps), np.log(errors), 1)[0]


def test_rk4_converges_at_fourth_order():
    assert fitted_order("rk4", [0.05, 0.025, 0.0125]) == pytest.approx(4.0, abs=0.15)


def test_variational_integrator_converges_at_second_order():
    assert fitted_order("variational", [0.1, 0.05, 0.025]) == pytest.approx(
        2.0, abs=0.05
    )


def test_variational_energy_error_stays_bounded_where_rk4_drifts():
    params = PENDULUM.params()
    q0, qd0 = jnp.array([2.0]), jnp.array([0.0])  # swinging up to 115°
    t = jnp.linspace(0.0, 1000.0, 201)  # about 500 periods, 10⁴ steps

    def energy_errors(solver):
        q, qd = rollout(PENDULUM.lagrangian, q0, qd0, t, params, solver=solver, dt=0.1)
        energy = jax.vmap(lddnn.energy, in_axes=(None, 0, 0, None, None))(
            PENDULUM.lagrangian, q, qd, 0.0, params
        )
        error = np.abs(np.asarray(energy - energy[0])) / PENDULUM.energy_scale(params)
        return error[:20].max(), error[-20:].max()  # first and last 10% of the run

    early, late = energy_errors("variational")
    assert late < 1.1 * early  # an O(dt²) oscillation, no trend
    early, late = energy_errors("rk4")
    assert late > 5 * early  # RK4 is not symplectic: its energy error grows


def test_variational_and_adaptive_rollouts_with_dissipation():
    # q̈ = −q − c q̇ from the Rayleigh function D = ½ c q̇²: an underdamped oscillator.
    damping = 0.4
    dissipation = lambda q, qd, params: 0.5 * damping * qd @ qd
    t = jnp.linspace(0.0, 10.0, 101)
    frequency = np.sqrt(1 - damping**2 / 4)
    expected = np.exp(-damping * t / 2) * (
        np.cos(frequency * t) + damping / (2 * frequency) * np.sin(frequency * t)
    )
    for solver, tolerance in [("dopri5", 1e-7), ("variational", 1e-4)]:
        q, _ = rollout(
            unit_oscillator,
            jnp.ones(1),
            jnp.zeros(1),
            t,
            solver=solver,
            dt=0.01,
            dissipation=dissipation,
        )
        np.testing.assert_allclose(q[:, 0], expected, atol=tolerance)


def test_rollout_inside_jit_matches_eager():
    t = jnp.linspace(0.0, 3.0, 7)
    qd0 = jnp.array([0.2])
    compiled = jax.jit(lambda q0: rollout(unit_oscillator, q0, qd0, t, solver="tsit5"))
    eager = rollout(unit_oscillator, jnp.array([0.5]), qd0, t, solver="tsit5")
    np.testing.assert_allclose(compiled(jnp.array([0.5]))[0], eager[0], rtol=1e-12)


def test_bad_arguments_are_refused_with_the_fix():
    q0, qd0, t = jnp.ones(1), jnp.zeros(1), jnp.linspace(0.0, 1.0, 11)
    with pytest.raises(ValueError, match="Unknown solver 'euler'; choose one of"):
        rollout(unit_oscillator, q0, qd0, t, solver="euler")
    with pytest.raises(ValueError, match="needs a positive step `dt`"):
        rollout(unit_oscillator, q0, qd0, t, solver="rk4")
    with pytest.raises(ValueError, match="not a whole number of steps"):
        rollout(unit_oscillator, q0, qd0, t, solver="variational", dt=0.03)
    with pytest.raises(ValueError, match="must have the same shape"):
        rollout(unit_oscillator, q0, jnp.zeros(2), t)
    with pytest.raises(ValueError, match="strictly increasing"):
        rollout(unit_oscillator, q0, qd0, t[::-1])
    with pytest.raises(ValueError, match="float32 can resolve"):
        single = (q0.astype(jnp.float32), qd0.astype(jnp.float32))
        rollout(unit_oscillator, *single, t, rtol=1e-10)


def test_failed_rollouts_raise_instead_of_returning_nan():
    q0, qd0 = jnp.ones(1), jnp.ones(1)
    # q̈ = q³ from these initial conditions reaches infinity at t ≈ 1.
    runaway = lambda q, qd, t, params: 0.5 * qd @ qd + 0.25 * jnp.sum(q**4)
    t = jnp.linspace(0.0, 3.0, 4)
    with pytest.raises(IntegrationError, match="dopri5 rollout failed"):
        rollout(runaway, q0, qd0, t, solver="dopri5", max_steps=10_000)
    with pytest.raises(IntegrationError, match="variational rollout failed"):
        rollout(runaway, q0, qd0, t, solver="variational", dt=0.01)
    with pytest.raises(IntegrationError, match="max_steps=5"):
        rollout(unit_oscillator, q0, qd0, t, solver="dopri5", max_steps=5)
