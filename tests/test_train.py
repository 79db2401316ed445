"""The training loop: convergence, losses, reproducibility, resumption, run files."""

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lddnn import _runfiles
from lddnn.train import (
    NonFiniteLossError,
    Samples,
    TrainConfig,
    acceleration_loss,
    acceleration_scale,
    load_checkpoint,
    train,
)


class Anharmonic(eqx.Module):
    """L = ½ a q̇² − ½ b q² − ¼ c q⁴: accelerations q̈ = −(b q + c q³) / a."""

    a: jax.Array
    b: jax.Array
    c: jax.Array

    def __call__(self, q, qd, t, params):
        potential = 0.5 * self.b * q @ q + 0.25 * self.c * jnp.sum(q**4)
        return 0.5 * self.a * qd @ qd - potential


class KineticPlusNetwork(eqx.Module):
    """½ |q̇|² plus a small softplus network of (q, q̇)."""

    mlp: eqx.nn.MLP

    def __init__(self, n: int, seed: int = 0):
        key = jax.random.key(seed)
        self.mlp = eqx.nn.MLP(2 * n, "scalar", 8, 2, jax.nn.softplus, key=key)

    def __call__(self, q, qd, t, params):
        return 0.5 * qd @ qd + 0.1 * self.mlp(jnp.concatenate([q, qd]))


def anharmonic_samples(count=256, b=4.0, c=0.5, seed=0):
    rng = np.random.default_rng(seed)
    q, qd = rng.uniform(-1.5, 1.5, (count, 1)), rng.normal(size=(count, 1))
    return Samples(q, qd, -(b * q + c * q**3))


def pendulum_pair_samples(count=128, seed=0):
    """Two coupled pendulums, L = ½|q̇|² + cos q₁ + cos q₂ − ½ k (q₁ − q₂)²."""
    rng = np.random.default_rng(seed)
    q, qd = rng.uniform(-2, 2, (count, 2)), rng.normal(size=(count, 2))
    coupling = 0.3 * (q[:, :1] - q[:, 1:]) * np.array([[1.0, -1.0]])
    return Samples(q, qd, -np.sin(q) - coupling)


def initial_anharmonic():
    return Anharmonic(jnp.array(1.0), jnp.array(1.0), jnp.array(0.0))


def leaves(model):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def assert_bitwise_equal(first, second):
    for x, y in zip(leaves(first), leaves(second), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


# --------------------------------------------------------------------------- learning


def test_oscillator_converges_to_true_coefficients():
    # Accelerations fix L only up to a factor, so the ratios b/a and c/a are learned.
    config = TrainConfig(
        steps=600,
        batch_size=64,
        learning_rate=0.05,
        schedule="exponential",
        decay_factor=0.01,
        precision="float64",
    )
    result = train(initial_anharmonic(), anharmonic_samples(), config)
    model = result.model
    assert float(model.b / model.a) == pytest.approx(4.0, rel=1e-3)
    assert float(model.c / model.a) == pytest.approx(0.5, rel=1e-2)
    assert result.history[-1]["loss"] < 1e-2 * result.history[0]["loss"]


def test_same_seed_same_parameters_and_different_seed_different():
    def run(seed):
        config = TrainConfig(
            steps=30, learning_rate=0.02, seed=seed, precision="float64"
        )
        return train(initial_anharmonic(), anharmonic_samples(), config).model

    assert_bitwise_equal(run(3), run(3))
    assert not np.array_equal(leaves(run(3))[1], leaves(run(4))[1])


def test_losses_on_a_hand_made_batch():
    # L = ½|q̇|² − ½|q|² predicts q̈ = −q: the first sample's error is (−3, −4), of
    # norm 5; the second sample is predicted exactly.
    oscillator = Anharmonic(jnp.array(1.0), jnp.array(1.0), jnp.array(0.0))
    q = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    batch = Samples(q, jnp.zeros_like(q), jnp.array([[2.0, 4.0], [0.0, -2.0]]))
    assert acceleration_loss(oscillator, batch) == pytest.approx(2.5)
    assert acceleration_loss(oscillator, batch, loss="mse") == pytest.approx(25 / 4)
    assert acceleration_loss(oscillator, batch, loss="l1") == pytest.approx(7 / 4)
    scaled = acceleration_loss(oscillator, batch, scale=jnp.array([3.0, 4.0]))
    assert scaled == pytest.approx(np.sqrt(2) / 2)


def test_norm_loss_gradient_is_finite_at_an_exact_prediction():
    oscillator = Anharmonic(jnp.array(1.0), jnp.array(1.0), jnp.array(0.0))
    q = jnp.array([[1.0], [2.0]])
    batch = Samples(q, jnp.zeros_like(q), -q)
    grads = eqx.filter_grad(acceleration_loss)(oscillator, batch)
    assert all(np.all(np.isfinite(g)) for g in leaves(grads))


def test_acceleration_scale_is_root_mean_square_and_never_zero():
    scale = acceleration_scale(np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(scale, [np.sqrt(6.0), 1.0])


def test_times_and_per_sample_parameters_reach_the_model():
    # L = ½q̇² − ½ k q² + t q: q̈ = −k q + t, with k given per sample.
    class Forced(eqx.Module):
        w: jax.Array

        def __call__(self, q, qd, t, params):
            return 0.5 * self.w * qd @ qd - 0.5 * params["k"] * q @ q + t * jnp.sum(q)

    q, k, t = np.ones((4, 1)), np.array([1.0, 2.0, 3.0, 4.0]), np.arange(4.0)
    batch = Samples(q, q, -k[:, None] * q + t[:, None], t, {"k": k})
    model = Forced(jnp.array(1.0))
    assert acceleration_loss(model, batch) == pytest.approx(0.0, abs=1e-12)


def test_float32_precision_casts_the_model():
    config = TrainConfig(steps=2, precision="float32")
    result = train(initial_anharmonic(), anharmonic_samples(), config)
    assert {x.dtype for x in leaves(result.model)} == {np.dtype("float32")}


def test_non_finite_loss_names_the_step():
    # With √b in L, Adam's first step (size ≈ learning rate) drives b below zero.
    class Root(eqx.Module):
        b: jax.Array

        def __call__(self, q, qd, t, params):
            return 0.5 * qd @ qd - 0.5 * jnp.sqrt(self.b) * q @ q

    samples = anharmonic_samples(b=0.01, c=0.0)
    config = TrainConfig(steps=10, learning_rate=5.0, precision="float32")
    with pytest.raises(NonFiniteLossError, match="at step 2.*learning rate.*float64"):
        train(Root(jnp.array(1.0)), samples, config)


def test_validation_keeps_the_best_model_and_stops_early():
    # A large learning rate makes the validation loss stall and oscillate.
    config = TrainConfig(
        steps=400,
        learning_rate=0.5,
        precision="float64",
        validate_every=5,
        early_stopping=3,
    )
    held_out = anharmonic_samples(count=64, seed=1)
    result = train(
        initial_anharmonic(), anharmonic_samples(), config, validation=held_out
    )
    assert result.stopped_early and result.steps < 400
    validations = [r.get("validation_loss", np.inf) for r in result.history]
    assert result.best_validation_loss == min(validations)
    assert acceleration_loss(result.best_model, held_out) == pytest.approx(
        result.best_validation_loss, rel=1e-12
    )
    assert acceleration_loss(result.model, held_out) > result.best_validation_loss


def test_progress_callback_and_the_library_never_prints(capsys):
    seen = []
    config = TrainConfig(steps=6, log_every=2, precision="float64")

    def progress(step, metrics):
        seen.append((step, metrics["loss"]))

    train(initial_anharmonic(), anharmonic_samples(), config, progress=progress)
    assert [step for step, _ in seen] == [2, 4, 6]
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 0}, "`steps` is 0"),
        ({"loss": "huber"}, "Unknown loss 'huber'"),
        ({"schedule": "linear"}, "Unknown schedule 'linear'"),
        ({"precision": "float16"}, "Unknown precision 'float16'"),
        ({"learning_rate": -1.0}, "`learning_rate` is -1.0"),
        ({"validation_fraction": 1.0}, "`validation_fraction` is 1.0"),
    ],
)
def test_bad_configuration_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_config_round_trips_through_json_and_refuses_unknown_keys():
    config = TrainConfig(steps=5, schedule="cosine", clip_norm=1.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="Unknown training options"):
        TrainConfig.from_dict({"step": 5})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s._replace(qd=s.qd[:, [0, 0]]), "`samples.qd` has shape"),
        (lambda s: s._replace(q=s.q[:, 0]), "`samples.q` has shape"),
        (lambda s: s._replace(qdd=np.where(s.q > 1, np.nan, s.qdd)), "NaN or inf"),
        (lambda s: s._replace(t=np.zeros(3)), "`samples.t` has shape"),
        (lambda s: s._replace(params={"k": np.ones(3)}), "one value per sample"),
        (lambda s: Samples(*[x[:8] for x in s[:3]]), "only 8 training samples"),
    ],
)
def test_bad_samples_are_refused_before_anything_is_written(change, message, tmp_path):
    samples = change(anharmonic_samples())
    config = TrainConfig(steps=5, precision="float64")
    with pytest.raises(ValueError, match=message):
        train(initial_anharmonic(), samples, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_float64_without_x64_is_refused():
    with jax.enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
        config = TrainConfig(precision="float64")
        train(initial_anharmonic(), anharmonic_samples(), config)


def test_a_model_with_singular_mass_matrix_is_refused():
    relu = lambda q, qd, t, p: jax.nn.relu(qd @ qd - q @ q)
    with pytest.raises(ValueError, match="cannot be trained.*singular"):
        train(relu, anharmonic_samples(), TrainConfig(steps=5, precision="float64"))


# ------------------------------------------------------------------ run directories


def resumable_config(steps=40, **changes):
    options = dict(
        steps=steps,
        batch_size=16,
        learning_rate=0.01,
        schedule="exponential",
        decay_steps=40,
        warmup_steps=5,
        precision="float64",
        validation_fraction=0.25,
        validate_every=5,
        checkpoint_every=10,
        log_every=1,
    )
    return TrainConfig(**(options | changes))


class Interrupt(Exception):
    pass


def interrupt_at(step, exception=Interrupt):
    def progress(current, metrics):
        if current == step:
            raise exception()

    return progress


def comparable(history):
    return [{k: v for k, v in r.items() if "second" not in k} for r in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    model = KineticPlusNetwork(2)
    return train(model, pendulum_pair_samples(), resumable_config(), run_dir), run_dir


@pytest.mark.parametrize("exception", [Interrupt, KeyboardInterrupt])
def test_resume_after_a_crash_equals_an_uninterrupted_run(
    uninterrupted, exception, tmp_path
):
    reference, _ = uninterrupted
    model, samples = KineticPlusNetwork(2), pendulum_pair_samples()
    config = resumable_config()
    with pytest.raises(exception):
        train(model, samples, config, tmp_path, progress=interrupt_at(27, exception))
    resumed = train(model, samples, config, tmp_path, resume=True)
    assert_bitwise_equal(resumed.model, reference.model)
    assert_bitwise_equal(resumed.best_model, reference.best_model)
    assert comparable(resumed.history) == comparable(reference.history)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 41))


def test_extending_a_finished_run_equals_a_longer_run(uninterrupted, tmp_path):
    reference, _ = uninterrupted
    model, samples = KineticPlusNetwork(2), pendulum_pair_samples()
    train(model, samples, resumable_config(steps=20), tmp_path)
    resumed = train(model, samples, resumable_config(steps=40), tmp_path, resume=True)
    assert_bitwise_equal(resumed.model, reference.model)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["steps"] == 40


def test_resume_refuses_a_different_configuration_or_data(uninterrupted):
    _, run_dir = uninterrupted
    model, samples = KineticPlusNetwork(2), pendulum_pair_samples()
    changed = resumable_config(learning_rate=0.02, seed=1)
    with pytest.raises(ValueError, match=r"learning_rate \(stored 0.01, given 0.02\)"):
        train(model, samples, changed, run_dir, resume=True)
    other = pendulum_pair_samples(seed=1)
    with pytest.raises(ValueError, match="samples differ"):
        train(model, other, resumable_config(), run_dir, resume=True)


def test_a_new_run_refuses_a_directory_holding_a_run(uninterrupted):
    _, run_dir = uninterrupted
    with pytest.raises(ValueError, match="already holds a training run"):
        config = resumable_config()
        train(KineticPlusNetwork(2), pendulum_pair_samples(), config, run_dir)


def test_run_directory_files(uninterrupted):
    result, run_dir = uninterrupted
    stored = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert stored == resumable_config()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert records == result.history
    assert [r["step"] for r in records] == list(range(1, 41))
    keys = {"step", "loss", "learning_rate", "elapsed_seconds", "steps_per_second"}
    assert all(keys <= set(r) for r in records)
    validated = [r["step"] for r in records if "validation_loss" in r]
    assert validated == list(range(5, 41, 5))
    assert records[0]["learning_rate"] == 0.0 and records[5]["learning_rate"] == 0.01
    final = eqx.tree_deserialise_leaves(run_dir / "model.eqx", KineticPlusNetwork(2))
    assert_bitwise_equal(final, result.model)
    assert (run_dir / "best_model.eqx").exists()
    assert not list(run_dir.glob(".tmp-*"))


def test_checkpoint_holds_the_step_and_the_best_validation(uninterrupted):
    result, run_dir = uninterrupted
    like = (result.model, None, None, None)
    with pytest.raises(ValueError, match="not an lddnn training checkpoint"):
        load_checkpoint(run_dir / "model.eqx", like)
    header = json.loads((run_dir / "checkpoint.eqx").open("rb").readline())
    assert header["step"] == 40
    assert header["best_validation_loss"] == result.best_validation_loss


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    serialise = eqx.tree_serialise_leaves
    calls = []

    def failing(stream, tree):
        calls.append(1)
        if len(calls) == 1:
            return serialise(stream, tree)
        stream.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(_runfiles.eqx, "tree_serialise_leaves", failing)
    model, samples = KineticPlusNetwork(2), pendulum_pair_samples()
    config = resumable_config(steps=20)
    with pytest.raises(OSError, match="No space"):
        train(model, samples, config, tmp_path)
    assert not list(tmp_path.glob(".tmp-*"))
    header = json.loads((tmp_path / "checkpoint.eqx").open("rb").readline())
    assert header["step"] == 10
    monkeypatch.undo()
    resumed = train(model, samples, config, tmp_path, resume=True)
    complete = train(model, samples, config)
    assert_bitwise_equal(resumed.model, complete.model)


def test_dataset_input_is_split_by_whole_trajectories():
    from lddnn.data import Dataset

    samples = anharmonic_samples(count=60)
    t = np.linspace(0.0, 1.0, 10)
    dataset = Dataset(t, *(x.reshape(6, 10, 1) for x in samples[:3]))
    # 2 of 6 trajectories held out leave 40 samples; a split of states would leave 45.
    config = TrainConfig(steps=4, precision="float64", validation_fraction=0.25)
    result = train(initial_anharmonic(), dataset, config)
    assert result.best_validation_loss is not None
    with pytest.raises(ValueError, match="only 40 training samples"):
        train(initial_anharmonic(), dataset, dataclasses.replace(config, batch_size=41))


def test_final_model_is_saved_with_its_hyperparameters(tmp_path):
    from lddnn import nn

    hyperparams = {"kind": "mlp", "n": 2, "width": 8, "depth": 2, "kinetic": 1.0}
    model = nn.make_model(**hyperparams)
    config = TrainConfig(steps=3, precision="float64")
    samples = pendulum_pair_samples()
    result = train(model, samples, config, tmp_path, hyperparams=hyperparams)
    assert_bitwise_equal(nn.load_model(tmp_path / "model.eqx"), result.model)


def test_progress_bar_shows_loss_and_rate():
    import io

    from rich.console import Console

    from lddnn._progress import progress_bar

    output = io.StringIO()
    console = Console(file=output, force_terminal=False, width=120)
    with progress_bar(10, console=console) as progress:
        metrics = {"loss": 0.125, "steps_per_second": 50.0, "validation_loss": 0.5}
        progress(10, metrics)
    text = output.getvalue()
    assert "10/10" in text and "1.250e-01" in text and "val 5.000e-01" in text
