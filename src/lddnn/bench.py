"""Benchmarks: speed and accuracy against references measured in the same process.

Every benchmark returns a JSON-able dict. Times are medians over repeated calls after
compilation (the first call is excluded), so they measure steady-state speed.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "BENCHMARKS",
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
        "cpu_count": __import__("os").cpu_count(),
        "machine": platform.machine(),
    }


BENCHMARKS: dict[str, Callable[[], dict]] = {
    "train-step": train_step,
}


def run(name: str) -> dict:
    """Run one benchmark by name."""
    if name not in BENCHMARKS:
        known = ", ".join(sorted(BENCHMARKS))
        raise ValueError(f"There is no benchmark named {name!r}; choose one of {known}.")
    return BENCHMARKS[name]()
