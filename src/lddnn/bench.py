"""Benchmarks: speed and accuracy against references measured in the same process.

Every benchmark returns a JSON-able dict. Times are medians over repeated calls after
compilation (the first call is excluded), so they measure steady-state speed.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "BENCHMARKS",
    "DEFAULT_SUITE",
    "interleaved_medians",
    "median_ms",
    "reference_accelerations",
    "run",
]


def median_ms(function: Callable, *args, repeats: int = 30) -> float:
    """Median wall time of `function(*args)` in milliseconds, after one warm-up call."""
    return interleaved_medians({"f": function}, *args, rounds=1, repeats=repeats)["f"]


def interleaved_medians(
    functions: dict[str, Callable], *args, rounds: int = 5, repeats: int = 10
) -> dict[str, float]:
    """Median wall time in milliseconds of each function called on `args`.

    Each function is compiled and called once first. The timed calls then alternate
    between the functions in `rounds` rounds of `repeats` calls each, so that a
    change in the machine's load during the run affects every function alike and
    their ratio stays fair.
    """
    for function in functions.values():
        jax.block_until_ready(function(*args))
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(function(*args))
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def reference_accelerations(lagrangian, q, qd, t=0.0, params=None):
    """The published formula: q̈ = pinv(∇_q̇∇_q̇ᵀ L) (∇_q L − (∇_q∇_q̇ᵀ L) q̇).

    A dense velocity Hessian, the mixed block as a reverse-over-reverse Jacobian and a
    pseudo-inverse — kept only as the baseline the speed benchmarks compare against.
    """

    def closed(q_, qd_):
        return lagrangian(q_, qd_, t, params)

    hessian = jax.hessian(closed, argnums=1)(q, qd)
    grad_q = jax.grad(closed, argnums=0)(q, qd)
    mixed = jax.jacobian(jax.jacobian(closed, argnums=1), argnums=0)(q, qd)
    return jnp.linalg.pinv(hessian) @ (grad_q - mixed @ qd)


def _ours(lagrangian, q, qd):
    from lddnn.mechanics import accelerations

    return accelerations(lagrangian, q, qd, check=False)


def _train_step(accelerations_fn, optimizer, q, qd, qdd):
    """One Adam step on the averaged per-sample 2-norm of the acceleration error."""

    def loss(model):
        predicted = jax.vmap(lambda a, b: accelerations_fn(model, a, b))(q, qd)
        return jnp.mean(jnp.linalg.norm(predicted - qdd, axis=-1))

    @eqx.filter_jit
    def step(model, opt_state):
        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), opt_state, value

    return step


def train_step(rounds: int = 6, repeats: int = 10, seed: int = 0) -> dict:
    """Training-step time of the paper configuration, ours against the published formula.

    4 × 500 softplus MLP Lagrangian of the double pendulum (angles embedded as cos/sin),
    batch 32, Adam at 1e-3, float32. Both steps share the model, data and optimizer;
    only the acceleration formula differs. Medians over `rounds` × `repeats` timed
    steps each, the two alternating round by round.
    """
    from lddnn.nn import make_model
    from lddnn.systems import get

    system = get("double-pendulum")
    params = system.params()
    key_data = jax.random.PRNGKey(seed)
    model = make_model(
        "mlp", system.n, system.angles, width=500, depth=4, activation="softplus",
        seed=seed,
    )
    keys = jax.random.split(key_data, 32)
    q, qd = jax.vmap(lambda k: system.sample_initial_state(k, params))(keys)
    qd = qd + jax.random.normal(key_data, qd.shape)
    qdd = jax.vmap(lambda a, b: system.equations_of_motion(a, b, 0.0, params))(q, qd)
    q, qd, qdd = (jnp.asarray(x, jnp.float32) for x in (q, qd, qdd))

    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    steps = {
        name: _train_step(formula, optimizer, q, qd, qdd)
        for name, formula in (("ours", _ours), ("reference", reference_accelerations))
    }
    timings = interleaved_medians(
        steps, model, opt_state, rounds=rounds, repeats=repeats
    )
    return {
        "benchmark": "train-step",
        "config": "MLP 4x500 softplus, batch 32, double pendulum, Adam 1e-3, float32",
        "ours_ms": timings["ours"],
        "reference_ms": timings["reference"],
        "speedup": timings["reference"] / timings["ours"],
        "goal_speedup": 2.0,
        **_machine(),
    }


def _machine() -> dict:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


# The double-pendulum energy errors published for the same protocol: the Lagrangian
# neural network after about 500k steps at batch 512, and an MLP that predicts the
# accelerations directly (no Lagrangian structure).
PUBLISHED_ENERGY_ERROR = {"lagrangian_nn": 0.0043, "acceleration_mlp": 0.074}


def _train_and_evaluate(preset: str) -> dict:
    """Train a preset run from scratch in a temporary directory and evaluate it."""
    from lddnn import runs

    config = runs.preset(preset)
    with tempfile.TemporaryDirectory(prefix="lddnn-bench-") as run_dir:
        start = time.perf_counter()
        result = runs.train_run(config, run_dir)
        train_seconds = time.perf_counter() - start
        report = runs.evaluate_run(run_dir, figures=False)
    return {
        "preset": preset,
        "model": config.model,
        "steps": result.steps,
        "energy_error": report["energy_error"],
        "rollout_error": report["rollout_error"],
        "valid_prediction_time": report["valid_prediction_time"]["mean"],
        "failed_rollouts": report["failed_rollouts"],
        "energy_error_truth": report["energy_error_truth"],
        "train_seconds": train_seconds,
        "evaluate_seconds": report["seconds"],
    }


def accuracy_double_pendulum() -> dict:
    """The demo run (general MLP Lagrangian) and the structured model, each trained
    from scratch and scored on the double-pendulum protocol (40 states, t ≤ 100)."""
    demo = _train_and_evaluate("demo")
    structured = _train_and_evaluate("structured")
    return {
        "benchmark": "accuracy-double-pendulum",
        **demo,
        "goal_energy_error": 0.01,
        "structured": structured,
        "published_energy_error": PUBLISHED_ENERGY_ERROR,
        **_machine(),
    }


def accuracy_double_pendulum_long() -> dict:
    """The longer run (at most an hour on two cores), on the same protocol."""
    return {
        "benchmark": "accuracy-double-pendulum-long",
        **_train_and_evaluate("long"),
        "goal_energy_error": 0.004,
        "published_energy_error": PUBLISHED_ENERGY_ERROR,
        **_machine(),
    }


def _conditioning(model, q, qd) -> dict:
    """Median and worst condition number of the velocity Hessian over states."""
    from lddnn.mechanics import mass_matrix

    masses = jax.vmap(lambda a, b: mass_matrix(model, a, b))(q, qd)
    eigenvalues = np.abs(np.asarray(jnp.linalg.eigvalsh(masses)))
    condition = eigenvalues.max(axis=-1) / np.maximum(eigenvalues.min(axis=-1), 1e-30)
    return {"median": float(np.median(condition)), "max": float(condition.max())}


def training_start(steps: int = 3000, seed: int = 0) -> dict:
    """How fast a fresh MLP Lagrangian leaves the "zero acceleration" plateau.

    The demo's network (3 × 128 softplus) trained on the demo's kind of data with
    the demo's optimizer, once as the plain network (kinetic α = 0) and once with the
    known kinetic term ½ α |q̇|², α = 1, added. Reports the scaled acceleration loss
    at a few steps, the first logged step below 0.5 (half the loss of predicting
    zero), and the condition number of the initial velocity Hessian.
    """
    from lddnn import systems
    from lddnn.nn import make_model
    from lddnn.train import NonFiniteLossError, Samples, TrainConfig, train

    system = systems.get("double-pendulum")
    with jax.enable_x64(True):
        data = systems.sample_states(system, jax.random.PRNGKey(seed + 1), 20_000)
    q, qd, qdd = (
        np.asarray(x, np.float32).reshape(-1, system.n)
        for x in (data.q, data.qd, data.qdd)
    )
    config = TrainConfig(
        steps=steps, batch_size=256, learning_rate=1e-3, schedule="cosine",
        warmup_steps=500, decay_factor=0.01, scale_accelerations=True, clip_norm=1.0,
        seed=seed, log_every=50,
    )
    marks = [m for m in (500, 1000, steps) if m <= steps]
    result = {"benchmark": "training-start", "steps": steps}
    for name, kinetic in (("plain", 0.0), ("kinetic_prior", 1.0)):
        model = make_model(
            "mlp", system.n, system.angles, width=128, depth=3, kinetic=kinetic,
            seed=seed,
        )
        conditioning = _conditioning(model, q[:1000], qd[:1000])
        try:
            history = train(model, Samples(q, qd, qdd), config).history
            diverged = None
        except NonFiniteLossError as error:
            history, diverged = [], str(error)
        loss = {h["step"]: h["loss"] for h in history}
        below = [h["step"] for h in history if h["loss"] < 0.5]
        result[name] = {
            "kinetic": kinetic,
            "loss": {str(m): loss.get(m) for m in marks},
            "diverged": diverged,
            "first_step_below_half": below[0] if below else None,
            "initial_mass_condition": conditioning,
        }
    return {**result, **_machine()}


BENCHMARKS: dict[str, Callable[[], dict]] = {
    "train-step": train_step,
    "training-start": training_start,
    "accuracy-double-pendulum": accuracy_double_pendulum,
    "accuracy-double-pendulum-long": accuracy_double_pendulum_long,
}


def _field_scaling() -> dict:
    from lddnn._bench_fields_scaling import field_scaling

    return field_scaling()


def _accuracy_sine_gordon() -> dict:
    from lddnn._bench_fields import accuracy_sine_gordon

    return accuracy_sine_gordon()


BENCHMARKS["field-scaling"] = _field_scaling
BENCHMARKS["accuracy-sine-gordon"] = _accuracy_sine_gordon
# What `lddnn bench` runs without a name: everything but the hour-long run.
DEFAULT_SUITE = (
    "train-step",
    "training-start",
    "accuracy-double-pendulum",
    "field-scaling",
    "accuracy-sine-gordon",
)


def run(name: str) -> dict:
    """Run one benchmark by name."""
    if name not in BENCHMARKS:
        known = ", ".join(sorted(BENCHMARKS))
        raise ValueError(f"There is no benchmark named {name!r}; choose one of {known}.")
    return BENCHMARKS[name]()
