"""Reference systems: hand-derived dynamics, conservation laws and ground truth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lddnn
from lddnn import systems

# A few periods of each system's sampled motion.
DURATION = {
    "harmonic-oscillator": 20.0,
    "pendulum": 10.0,
    "double-pendulum": 10.0,
    "kepler": 15.0,
    "relativistic-particle": 20.0,
    "charged-particle-magnetic": 20.0,
}


@pytest.fixture(scope="module")
def ground_truth():
    """Trajectories of every system at tight tolerance, simulated once per module."""
    return {
        name: systems.simulate(
            name,
            jax.random.key(7),
            3,
            jnp.linspace(0.0, DURATION[name], 51),
            rtol=1e-12,
            atol=1e-12,
        )
        for name in systems.names()
    }


def test_registry_lists_the_six_systems_and_refuses_unknown_names():
    assert systems.names() == list(DURATION)
    assert systems.get("double-pendulum") is systems.DOUBLE_PENDULUM
    with pytest.raises(ValueError, match="Unknown system 'triple-pendulum'.*kepler"):
        systems.get("triple-pendulum")


def test_params_merge_overrides_and_refuse_unknown_names():
    system = systems.DOUBLE_PENDULUM
    expected = {"m1": 1.0, "m2": 1.0, "l1": 1.0, "l2": 1.0, "g": 3.7}
    assert system.params(g=3.7) == expected
    with pytest.raises(ValueError, match="no parameter 'm3'; its parameters are m1"):
        system.params(m3=1.0)
    assert system.energy_scale(system.params()) == pytest.approx(29.4)


def random_params(system, key, count):
    """`count` parameter sets: the defaults, each scaled by a factor in [0.5, 2)."""
    factors = jax.random.uniform(
        key, (len(system.default_params), count), minval=0.5, maxval=2.0
    )
    return {
        name: value * factor
        for (name, value), factor in zip(system.default_params.items(), factors)
    }


@pytest.mark.parametrize("name", list(DURATION))
def test_euler_lagrange_reproduces_hand_derived_equations(name):
    system = systems.get(name)
    params_key, state_key = jax.random.split(jax.random.key(0))
    params = random_params(system, params_key, 16)
    keys = jax.random.split(state_key, 16)

    @jax.jit
    @jax.vmap
    def both(key, params):
        q, qd = system.sample_initial_state(key, params)
        derived = lddnn.accelerations(system.lagrangian, q, qd, 0.0, params)
        return derived, system.equations_of_motion(q, qd, 0.0, params)

    derived, by_hand = both(keys, params)
    scale = np.abs(by_hand).max()
    np.testing.assert_allclose(derived, by_hand, rtol=1e-10, atol=1e-13 * scale)


@pytest.mark.parametrize("name", list(DURATION))
def test_ground_truth_conserves_energy(name, ground_truth):
    system, data = systems.get(name), ground_truth[name]
    per_state = lambda q, qd: lddnn.energy(system.lagrangian, q, qd, 0.0, data.params)
    energy = jax.jit(jax.vmap(jax.vmap(per_state)))(data.q, data.qd)
    drift = np.abs(energy - energy[:, :1]) / system.energy_scale(data.params)
    assert drift.max() < 1e-8


def test_ground_truth_dataset_is_complete_and_seeded(ground_truth):
    data = ground_truth["double-pendulum"]
    assert data.q.shape == data.qd.shape == data.qdd.shape == (3, 51, 2)
    assert data.system == "double-pendulum" and data.angles == (True, True)
    assert data.params == systems.DOUBLE_PENDULUM.params()
    per_state = lambda q, qd: systems.DOUBLE_PENDULUM.equations_of_motion(
        q, qd, 0.0, data.params
    )
    by_hand = jax.vmap(jax.vmap(per_state))(data.q, data.qd)
    np.testing.assert_allclose(data.qdd, by_hand, rtol=1e-10, atol=1e-12)
    # The benchmark protocol's sampling: θ ∈ [0, 2π)², θ̇ ∈ [0, 0.1)².
    keys = jax.random.split(jax.random.key(0), 1000)
    sample = jax.vmap(systems.DOUBLE_PENDULUM.sample_initial_state, in_axes=(0, None))
    q, qd = sample(keys, data.params)
    assert 0 <= q.min() and q.max() < 2 * np.pi and q.max() > 6.0
    assert 0 <= qd.min() and qd.max() < 0.1
    np.testing.assert_array_equal(sample(keys, data.params)[0], q)


def test_kepler_conserves_angular_momentum(ground_truth):
    data = ground_truth["kepler"]
    (x, y), (vx, vy) = np.moveaxis(data.q, -1, 0), np.moveaxis(data.qd, -1, 0)
    angular = x * vy - y * vx
    assert np.abs(angular / angular[:, :1] - 1).max() < 1e-9
    # The orbits sampled are bound: the relative distance stays finite and positive.
    radius = np.hypot(x, y)
    assert radius.min() > 0.05 and radius.max() < 10


def test_charged_particle_circles_at_the_larmor_radius():
    params = {"m": 2.0, "charge": 0.5, "B": 3.0}
    # Same count, times and tolerances as `ground_truth`: the compiled solve is reused.
    data = systems.simulate(
        "charged-particle-magnetic",
        jax.random.key(3),
        3,
        jnp.linspace(0.0, DURATION["charged-particle-magnetic"], 51),
        params,
        rtol=1e-12,
        atol=1e-12,
    )
    q, qd = data.q, data.qd
    frequency = params["charge"] * params["B"] / params["m"]
    # The centre of the circle, from the initial state: x + (ẏ, −ẋ)/ω.
    centre = q[:, 0] + np.stack([qd[:, 0, 1], -qd[:, 0, 0]], axis=-1) / frequency
    speed = np.linalg.norm(qd[:, 0], axis=-1)
    larmor = params["m"] * speed / (params["charge"] * params["B"])
    distance = np.linalg.norm(q - centre[:, None], axis=-1)
    np.testing.assert_allclose(distance, larmor[:, None] + 0 * distance, rtol=1e-8)


def test_double_pendulum_states_lie_on_the_energy_shells_of_protocol_starts():
    system = systems.DOUBLE_PENDULUM
    params = system.params()
    data = systems.sample_states(system, jax.random.key(3), 4000, params)
    q, qd = data.q[:, 0], data.qd[:, 0]
    energy = jax.vmap(lambda a, b: lddnn.energy(system.lagrangian, a, b, 0.0, params))
    shells = np.sort(np.asarray(energy(q, qd)))
    # A protocol start is at rest (up to q̇ < 0.1) at uniform angles, so its energy
    # is V(q0); the sampled states must carry the same energy distribution.
    q0 = jax.random.uniform(jax.random.key(4), (4000, 2), maxval=2 * np.pi)
    potential = -2 * 9.8 * np.cos(q0[:, 0]) - 9.8 * np.cos(q0[:, 1])
    starts = np.sort(np.asarray(potential))
    assert np.max(np.abs(shells - starts)) < 0.05 * system.energy_scale(params)
    # The states move (they are not the starts themselves) and their stored
    # accelerations are the hand-derived ones.
    assert np.median(np.linalg.norm(qd, axis=-1)) > 1.0
    by_hand = jax.vmap(lambda a, b: system.equations_of_motion(a, b, 0.0, params))
    np.testing.assert_allclose(data.qdd[:, 0], by_hand(q, qd), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="trajectories"):
        systems.sample_states("pendulum", jax.random.key(0), 10)
