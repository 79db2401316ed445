"""Learnable Lagrangians: refusals, symmetries, structure, persistence and learning."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lddnn
from lddnn import nn


def _states(n, count, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    q = rng.uniform(-scale, scale, (count, n))
    qd = rng.uniform(-scale, scale, (count, n))
    return jnp.asarray(q), jnp.asarray(qd)


@pytest.mark.parametrize(
    "activation", ["relu", jax.nn.relu, lambda x: 3.0 * x - 1.0, jnp.abs]
)
def test_activations_without_curvature_are_refused(activation):
    with pytest.raises(ValueError, match="second derivative"):
        nn.make_model("mlp", 2, width=8, depth=1, activation=activation)


def test_smooth_activations_are_accepted_and_unknown_names_refused():
    for name in ("softplus", "tanh", "sigmoid"):
        nn.make_model("mlp", 2, width=8, depth=1, activation=name, dtype="float64")
    nn.make_model("mlp", 2, width=8, depth=1, activation=jax.nn.gelu)
    with pytest.raises(ValueError, match="Unknown activation"):
        nn.make_model("mlp", 2, width=8, depth=1, activation="swish-ish")


def test_bad_construction_arguments_are_refused():
    with pytest.raises(ValueError, match="one flag per coordinate"):
        nn.make_model("mlp", 3, angles=(True, False))
    with pytest.raises(ValueError, match="Unknown model kind"):
        nn.make_model("transformer", 2)


@pytest.mark.parametrize("kind", ["mlp", "structured"])
def test_angle_embedding_makes_the_model_periodic_in_angles_only(kind):
    model = nn.make_model(kind, 3, angles=(True, False, True), width=16, depth=2,
                          dtype="float64")
    q, qd = _states(3, 5)
    shift = jnp.array([2 * jnp.pi, 0.0, -4 * jnp.pi])
    value = jax.vmap(model)(q, qd)
    np.testing.assert_allclose(jax.vmap(model)(q + shift, qd), value, rtol=1e-12,
                               atol=1e-12)
    moved = jax.vmap(model)(q + jnp.array([0.0, 2 * jnp.pi, 0.0]), qd)
    assert np.max(np.abs(moved - value)) > 1e-6


def test_structured_mass_is_factor_product_and_velocity_hessian():
    model = nn.make_model("structured", 3, angles=(True, True, False), width=16,
                          depth=2, dtype="float64", seed=3)
    q, qd = _states(3, 6, seed=1)
    for qi, qdi in zip(q, qd):
        factor = model.factor(qi)
        assert np.allclose(factor, jnp.tril(factor)) and np.all(jnp.diag(factor) > 0)
        mass = model.mass(qi)
        np.testing.assert_allclose(mass, factor @ factor.T, rtol=1e-14)
        np.testing.assert_allclose(mass, mass.T, rtol=0, atol=0)
        assert np.all(np.linalg.eigvalsh(mass) > 0)
        hessian = lddnn.mass_matrix(model, qi, qdi)
        np.testing.assert_allclose(hessian, mass, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("mlp", dict(kinetic=1.0, fourier_features=4, fourier_scale=0.5)),
        ("mlp", dict(use_time=True, param_names=["m", "k"])),
        ("structured", dict(potential_scale=2.0)),
    ],
)
def test_save_and_load_round_trip(tmp_path, kind, extra):
    hyperparams = dict(kind=kind, n=2, angles=[True, False], width=8, depth=2,
                       seed=7, dtype="float64", **extra)
    model = nn.make_model(**hyperparams)
    path = tmp_path / "model.eqx"
    nn.save_model(path, model, hyperparams)
    assert (tmp_path / "model.json").exists()
    loaded = nn.load_model(path)
    q, qd = _states(2, 4)
    params = {"m": 1.5, "k": 0.3}
    before = jax.vmap(lambda a, b: model(a, b, 0.4, params))(q, qd)
    after = jax.vmap(lambda a, b: loaded(a, b, 0.4, params))(q, qd)
    np.testing.assert_array_equal(before, after)


def test_save_refuses_hyperparameters_that_cannot_rebuild_the_model(tmp_path):
    model = nn.make_model("mlp", 1, width=4, depth=1)
    with pytest.raises(ValueError, match="kind"):
        nn.save_model(tmp_path / "model.eqx", model, {"width": 4})
    assert not list(tmp_path.iterdir())


def test_parameters_as_inputs_are_required():
    model = nn.make_model("mlp", 1, width=4, depth=1, param_names=["m"])
    with pytest.raises(ValueError, match="params"):
        model(jnp.zeros(1), jnp.zeros(1), 0.0, None)


def test_fourier_frequencies_are_not_trained():
    model = nn.make_model("mlp", 2, width=8, depth=1, fourier_features=3,
                          dtype="float64")
    grads = eqx.filter_grad(lambda m: m(jnp.ones(2), jnp.ones(2)))(model)
    assert np.all(grads.fourier.frequencies == 0)
    assert np.any(grads.mlp.layers[0].weight != 0)


def test_kinetic_term_makes_a_fresh_model_well_conditioned():
    """The paper's 4 × 500 network plus ½|q̇|²: M starts close to the identity."""
    model = nn.make_model("mlp", 2, angles=(True, True), width=500, depth=4,
                          kinetic=1.0, velocity_scale=5.0, dtype="float64")
    q, qd = _states(2, 8, scale=6.0)
    mass = jax.jit(jax.vmap(lambda a, b: lddnn.mass_matrix(model, a, b)))(q, qd)
    assert np.all(np.linalg.cond(mass) < 1.5)
    assert np.all(np.isfinite(lddnn.accelerations(model, q[0], qd[0])))


def test_tiny_model_learns_a_harmonic_oscillator():
    """L = ½ q̇² − ½ ω² q²: a fitted model reproduces q̈ = −ω² q on unseen states."""
    omega2 = 2.0

    def oscillator(q, qd, t, params):
        return 0.5 * qd @ qd - 0.5 * omega2 * q @ q

    model = nn.make_model("mlp", 1, width=16, depth=2, kinetic=1.0, dtype="float64")
    q, qd = _states(1, 256, seed=2, scale=1.0)
    target = -omega2 * q
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-2, 400))
    state = optimizer.init(eqx.filter(model, eqx.is_array))

    def loss(model):
        predicted = jax.vmap(lambda a, b: lddnn.accelerations(model, a, b, check=False))
        return jnp.mean(jnp.sum((predicted(q, qd) - target) ** 2, axis=-1))

    @eqx.filter_jit
    def step(model, state):
        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = optimizer.update(grads, state)
        return eqx.apply_updates(model, updates), state, value

    for _ in range(400):
        model, state, _ = step(model, state)

    q_test, qd_test = _states(1, 64, seed=5, scale=0.9)
    predicted = jax.vmap(lambda a, b: lddnn.accelerations(model, a, b))(q_test, qd_test)
    expected = -omega2 * q_test
    relative = np.linalg.norm(predicted - expected) / np.linalg.norm(expected)
    assert relative < 0.05
    assert np.all(np.isfinite(oscillator(q_test[0], qd_test[0], 0.0, None)))
