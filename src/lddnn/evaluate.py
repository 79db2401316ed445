"""How well a learned Lagrangian predicts motion: energy error, rollout error, reports.

The benchmark figure is the energy error of a predicted trajectory measured with the
*true* energy: |E_true(q(t), q̇(t)) − E_true(q(0), q̇(0))| / E_scale, averaged over
initial states and times. A model whose rollouts stay on the true energy surface scores
near zero even when chaos separates its trajectories from the truth; the rollout error
and the valid prediction time measure that separation.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lddnn.mechanics import energy

__all__ = [
    "energy_error",
    "evaluate_model",
    "evaluate_trajectories",
    "report_summary",
    "rollout_error",
    "valid_prediction_time",
    "write_report",
]

CHECKPOINT_TIMES = (1.0, 3.0, 10.0)
DEFAULT_THRESHOLD = 0.1


def energy_error(system, params, q, qd) -> np.ndarray:
    """Relative energy drift |E(q(t), q̇(t)) − E(q(0), q̇(0))| / E_scale.

    E is the system's true energy (the Legendre transform of `system.lagrangian`)
    and E_scale = `system.energy_scale(params)`.

    Arguments:
        system: a reference system with `lagrangian` and `energy_scale`.
        params: the system's parameters.
        q, qd: states along trajectories, shape (..., T, n); index 0 of the time
            axis is the initial state.

    Returns:
        The error at every state and time, shape (..., T).
    """
    q, qd = jnp.asarray(q), jnp.asarray(qd)
    if q.ndim < 2 or qd.shape != q.shape:
        raise ValueError(
            f"`q` has shape {q.shape} and `qd` has shape {qd.shape}; both must have "
            "the same shape (..., T, n), with time on the second-to-last axis."
        )
    flat = jax.vmap(lambda q_, qd_: energy(system.lagrangian, q_, qd_, 0.0, params))
    energies = flat(q.reshape(-1, q.shape[-1]), qd.reshape(-1, q.shape[-1]))
    energies = energies.reshape(q.shape[:-1])
    drift = jnp.abs(energies - energies[..., :1])
    return np.asarray(drift / system.energy_scale(params))


def _wrap(angle):
    """Map to (−π, π]."""
    return np.pi - np.mod(np.pi - angle, 2 * np.pi)


def rollout_error(q_true, q_pred, angles=None) -> np.ndarray:
    """Relative rollout error e(t) = √(mean_i (Δq_i(t) / s_i)²) over coordinates i.

    Δq = q_pred − q_true, with differences of angles wrapped to (−π, π]. The scale
    s_i is π for an angle (so a wrapped angle contributes at most 1, "as wrong as
    possible") and, for any other coordinate, the RMS of the true coordinate's
    motion about its time mean on that trajectory (so 1 means "off by the typical
    size of the motion"); a coordinate that does not move is compared absolutely.
    Normalizing each coordinate makes the error unit-free when angles and lengths
    mix.

    Arguments:
        q_true, q_pred: coordinates, shape (..., T, n).
        angles: which coordinates are angles (n flags), or None for none.

    Returns:
        e(t), shape (..., T). Non-finite predictions give inf.
    """
    q_true, q_pred = np.asarray(q_true), np.asarray(q_pred)
    if q_true.shape != q_pred.shape or q_true.ndim < 2:
        raise ValueError(
            f"`q_true` has shape {q_true.shape} and `q_pred` has shape "
            f"{q_pred.shape}; both must have the same shape (..., T, n)."
        )
    mask = _angle_mask(angles, q_true.shape[-1])
    difference = np.where(mask, _wrap(q_pred - q_true), q_pred - q_true)
    spread = np.std(q_true, axis=-2, keepdims=True)
    scale = np.where(mask, np.pi, np.where(spread > 0, spread, 1.0))
    error = np.sqrt(np.mean((difference / scale) ** 2, axis=-1))
    return np.where(np.isfinite(error), error, np.inf)


def _angle_mask(angles, n: int) -> np.ndarray:
    if angles is None:
        return np.zeros(n, dtype=bool)
    mask = np.asarray(angles, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(
            f"`angles` has {mask.size} flags but the coordinates have n = {n}; give "
            "one flag per coordinate (True where it is an angle)."
        )
    return mask


def valid_prediction_time(t, error, threshold: float = DEFAULT_THRESHOLD):
    """Time until the error first exceeds `threshold`, t_k − t_0.

    A trajectory whose error never exceeds the threshold gets the whole span
    t_end − t_0 (a lower bound). Non-finite errors count as exceeding it.

    Arguments:
        t: sample times, shape (T,).
        error: errors at those times, shape (..., T), e.g. from `rollout_error`.
        threshold: the largest acceptable error.

    Returns:
        The valid prediction time, shape (...).
    """
    t, error = np.asarray(t), np.asarray(error)
    if error.shape[-1:] != t.shape:
        raise ValueError(
            f"`error` has shape {error.shape} but `t` has shape {t.shape}; the last "
            "axis of `error` must be time."
        )
    exceeded = ~(error <= threshold)
    first = np.where(exceeded.any(axis=-1), exceeded.argmax(axis=-1), t.shape[0] - 1)
    return t[first] - t[0]


# ------------------------------------------------------------------------- protocol


def _evaluation_times(t_end: float, num_times: int) -> np.ndarray:
    """An even grid on [0, t_end] that contains the checkpoint times exactly."""
    t = np.linspace(0.0, t_end, num_times)
    for checkpoint in CHECKPOINT_TIMES:
        if checkpoint > t_end:
            continue
        k = int(np.argmin(np.abs(t - checkpoint)))
        # Snap grid points that miss a checkpoint by round-off (30 × 0.1 ≠ 3.0).
        if abs(t[k] - checkpoint) <= 1e-9 * t_end:
            t[k] = checkpoint
        else:
            t = np.sort(np.append(t, checkpoint))
    return t


def _initial_states(system, params, count: int, seed: int):
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    states = [system.sample_initial_state(key, params) for key in keys]
    q0 = jnp.stack([jnp.asarray(q) for q, _ in states])
    qd0 = jnp.stack([jnp.asarray(qd) for _, qd in states])
    return q0, qd0


def _chunks(count: int, batch: int | None):
    size = count if batch is None else max(1, int(batch))
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def _first_line(error: BaseException) -> str:
    """The error's own sentence, without the traceback equinox puts first."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    marker = f"{type(error).__name__}: "
    ours = [line.split(marker, 1)[1] for line in lines if marker in line]
    message = (ours or lines or [""])[0]
    return f"{type(error).__name__}: {message[:300]}"


def _roll(lagrangian, q0, qd0, t, params, batch, options):
    """Truth: any failure is a bug in the reference system, so it propagates."""
    from lddnn.integrate import rollout

    parts = [
        rollout(lagrangian, q0[a:b], qd0[a:b], t, params, **options)
        for a, b in _chunks(q0.shape[0], batch)
    ]
    q = np.concatenate([np.asarray(p[0]) for p in parts])
    qd = np.concatenate([np.asarray(p[1]) for p in parts])
    return q, qd


def _roll_model(model, q0, qd0, t, params, options):
    """Prediction: a learned Lagrangian may fail (singular mass matrix, a stiff or
    exploding solve); that is a result to report, so the failing states are left
    as NaN while the others are kept.

    Each state is rolled out on its own, on as many threads as there are cores.
    In a batched solve every state takes as many steps as the slowest one, so one
    state running into a stiff region would hold all of them up to the step limit.
    """
    from lddnn.integrate import rollout

    count, n = q0.shape
    q = np.full((count, t.shape[0], n), np.nan)
    qd = np.full_like(q, np.nan)
    failures: dict[int, str] = {}

    # JAX's precision scope is per thread: the workers take the caller's.
    x64 = bool(jax.config.jax_enable_x64)

    def roll(i: int) -> None:
        try:
            with jax.enable_x64(x64):
                q[i], qd[i] = rollout(model, q0[i], qd0[i], t, params, **options)
        except (ValueError, RuntimeError) as error:
            failures[i] = _first_line(error)

    roll(0)  # compiles once, before the threads share the compiled solve
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(roll, range(1, count)))
    broken = ~(np.isfinite(q).all(axis=(1, 2)) & np.isfinite(qd).all(axis=(1, 2)))
    for i in np.flatnonzero(broken):
        failures.setdefault(int(i), "the rollout produced NaN or infinite states")
    return q, qd, failures


def _number(value) -> float | None:
    """A JSON number; NaN and inf (no JSON spelling) become null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values) -> float | None:
    values = np.asarray(values)
    return _number(values.mean()) if values.size else None


def _protocol(t, options, count, threshold, dtype, initial_states) -> dict:
    return {
        "count": count,
        "t_end": float(t[-1]),
        "num_times": int(t.shape[0]),
        **{k: v for k, v in options.items()},
        "dtype": str(dtype),
        "initial_states": initial_states,
        "energy_error": (
            "mean over states and times of |E_true(predicted state) − "
            "E_true(initial state)| / energy_scale"
        ),
        "rollout_error": (
            "mean over states of √(mean_i (Δq_i / s_i)²), angle differences wrapped "
            "to (−π, π], s_i = π for angles and the RMS of the true motion otherwise"
        ),
        "valid_prediction_time": (
            f"time until the rollout error first exceeds {threshold} (the whole span "
            "when it never does)"
        ),
    }


def _over_time(t, energy, rollout) -> dict:
    """A short table of the mean errors at ~10 evenly spaced times and checkpoints."""
    marks = np.linspace(0, t.shape[0] - 1, 11).round().astype(int)
    checkpoints = [int(np.argmin(np.abs(t - c))) for c in CHECKPOINT_TIMES]
    index = np.unique(np.concatenate([marks, checkpoints]))
    return {
        "t": [float(t[k]) for k in index],
        "energy_error": [_mean(energy[:, k]) for k in index],
        "rollout_error": [_mean(rollout[:, k]) for k in index],
    }


def _summarize(t, energy, rollout, threshold) -> dict:
    valid = valid_prediction_time(t, rollout, threshold)
    checkpoints = {
        f"{c:g}": _mean(rollout[:, int(np.argmin(np.abs(t - c)))])
        for c in CHECKPOINT_TIMES
        if c <= t[-1]
    }
    return {
        "energy_error": _mean(energy),
        "energy_error_final": _mean(energy[:, -1]),
        "rollout_error": checkpoints,
        "rollout_error_mean": _mean(rollout),
        "valid_prediction_time": {
            "mean": _mean(valid),
            "median": _number(np.median(valid)) if valid.size else None,
            "threshold": threshold,
        },
        "over_time": _over_time(t, energy, rollout),
    }


def evaluate_model(
    lagrangian_model,
    system,
    params=None,
    *,
    count: int = 40,
    t_end: float = 100.0,
    num_times: int = 1001,
    seed: int = 0,
    solver: str = "dopri5",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 400_000,
    batch: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    dt: float | None = None,
) -> dict[str, Any]:
    """Roll out a learned Lagrangian and the true one from the same initial states.

    `count` initial states are drawn with `system.sample_initial_state` from `seed`;
    both Lagrangians are integrated with `lddnn.integrate.rollout` to `t_end`
    (`num_times` even samples, plus t = 1, 3, 10 exactly). The predicted states are
    scored with the true energy (`energy_error`) and against the true states
    (`rollout_error`, `valid_prediction_time`).

    Arguments:
        lagrangian_model: the learned Lagrangian, `model(q, qd, t, params) -> scalar`.
        system: the reference system the model was trained on.
        params: the system's parameters; None for its defaults.
        max_steps: the step limit of each adaptive rollout. A double-pendulum
            rollout to t = 100 at rtol 1e-8 takes about 6000 steps, and a learned
            model whose velocity Hessian comes close to singular along the way may
            take a hundred times more, which it is given so that it is scored
            rather than dropped; beyond the limit the rollout counts as failed.
        batch: roll out at most this many reference states at once (memory); None
            for all. Model rollouts run one state at a time.
        threshold: rollout error that ends the valid prediction time.
        dt: the step of the fixed-step solvers ("rk4", "variational").

    Returns:
        A report: JSON-able entries (see `report_summary`) — `energy_error` (the
        benchmark figure), `energy_error_final`, `energy_error_truth` (the solver's
        own floor), `rollout_error` keyed by "1", "3", "10", `valid_prediction_time`,
        `over_time`, `failed_rollouts`, `failures`, `protocol`, `seconds` — and
        `arrays` (NumPy, for figures): `t`, `q_true`, `qd_true`, `q_pred`,
        `qd_pred`, `energy_error`, `rollout_error` (NaN or inf for failed states),
        `energy_error_truth`.
        Model rollouts that fail are recorded in `failures` and left out of the
        means, never raised.
    """
    start = time.perf_counter()
    params = system.params(**(params or {}))
    options = {"solver": solver, "rtol": rtol, "atol": atol, "max_steps": max_steps}
    if dt is not None:
        options["dt"] = dt
    q0, qd0 = _initial_states(system, params, count, seed)
    t = jnp.asarray(_evaluation_times(t_end, num_times), dtype=q0.dtype)
    q_true, qd_true = _roll(system.lagrangian, q0, qd0, t, params, batch, options)
    q_pred, qd_pred, failures = _roll_model(
        lagrangian_model, q0, qd0, t, params, options
    )
    t = np.asarray(t)
    ok = np.array([i not in failures for i in range(count)])
    energy = np.full(q_pred.shape[:2], np.nan)
    if ok.any():
        energy[ok] = energy_error(system, params, q_pred[ok], qd_pred[ok])
    rollout = rollout_error(q_true, q_pred, system.angles)
    energy_truth = energy_error(system, params, q_true, qd_true)
    initial_states = (
        f"{count} states from the system's sample_initial_state, one per key of "
        f"jax.random.split(jax.random.PRNGKey({seed}), {count})"
    )
    return {
        "system": system.name,
        "params": {k: float(v) for k, v in params.items()},
        **_summarize(t, energy[ok], rollout[ok], threshold),
        "energy_error_truth": _mean(energy_truth),
        "failed_rollouts": len(failures),
        "failures": [{"state": i, "error": m} for i, m in sorted(failures.items())],
        "protocol": {
            **_protocol(t, options, count, threshold, q0.dtype, initial_states),
            "seed": seed,
            "energy_scale": float(system.energy_scale(params)),
        },
        "seconds": time.perf_counter() - start,
        "arrays": {
            "t": t,
            "q_true": q_true,
            "qd_true": qd_true,
            "q_pred": q_pred,
            "qd_pred": qd_pred,
            "energy_error": energy,
            "rollout_error": rollout,
            "energy_error_truth": energy_truth,
        },
    }


def evaluate_trajectories(
    lagrangian_model,
    t,
    q,
    qd,
    system=None,
    params=None,
    *,
    angles=None,
    solver: str = "dopri5",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 400_000,
    threshold: float = DEFAULT_THRESHOLD,
    source: str = "stored trajectories",
) -> dict[str, Any]:
    """Roll out a learned Lagrangian from the first state of each given trajectory
    and compare with the trajectory; the report has the layout of `evaluate_model`.

    Arguments:
        t: sample times, shape (T,); q, qd: the trajectories, shape (B, T, n).
        system: the reference system the data comes from, or None. With a system
            the predicted states are scored with its true energy, and
            `energy_error_truth` is the energy drift of the given trajectories.
        params: the system's parameters; None for its defaults.
        angles: which coordinates are angles; None takes the system's.
        source: how the report names where the trajectories came from.
    """
    start = time.perf_counter()
    t, q, qd = np.asarray(t), np.asarray(q), np.asarray(qd)
    options = {"solver": solver, "rtol": rtol, "atol": atol, "max_steps": max_steps}
    if system is not None:
        params = system.params(**(params or {}))
        angles = system.angles if angles is None else angles
    q_pred, qd_pred, failures = _roll_model(
        lagrangian_model, jnp.asarray(q[:, 0]), jnp.asarray(qd[:, 0]),
        jnp.asarray(t), params, options,
    )
    count = q.shape[0]
    ok = np.array([i not in failures for i in range(count)])
    rollout = rollout_error(q, q_pred, angles)
    energy = np.full(q_pred.shape[:2], np.nan)
    energy_truth = np.zeros((0, t.shape[0]))
    if system is not None:
        if ok.any():
            energy[ok] = energy_error(system, params, q_pred[ok], qd_pred[ok])
        energy_truth = energy_error(system, params, q, qd)
    scored = energy[ok] if system is not None else np.zeros((0, t.shape[0]))
    protocol = _protocol(
        t, options, count, threshold, q.dtype,
        f"the first state of each of the {count} {source}",
    )
    return {
        "system": system.name if system is not None else None,
        "params": {k: float(v) for k, v in (params or {}).items()},
        **_summarize(t, scored, rollout[ok], threshold),
        "energy_error_truth": _mean(energy_truth),
        "failed_rollouts": len(failures),
        "failures": [{"state": i, "error": m} for i, m in sorted(failures.items())],
        "protocol": protocol,
        "seconds": time.perf_counter() - start,
        "arrays": {
            "t": t,
            "q_true": q,
            "qd_true": qd,
            "q_pred": q_pred,
            "qd_pred": qd_pred,
            "rollout_error": rollout,
            **({"energy_error": energy, "energy_error_truth": energy_truth}
               if system is not None else {}),
        },
    }


# -------------------------------------------------------------------------- reports


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a report: everything but the `arrays` for figures."""
    return {k: v for k, v in report.items() if k != "arrays"}


def _atomic_write_text(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _format(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        readable = value == 0 or 1e-3 <= abs(value) < 1e4
        return f"{value:.3g}" if readable else f"{value:.2e}"
    return str(value)


def _markdown(report: dict[str, Any]) -> str:
    protocol = report["protocol"]
    valid = report["valid_prediction_time"]
    rows = [
        ("energy error (mean over states and times)", report["energy_error"]),
        (f"energy error at t = {protocol['t_end']:g}", report["energy_error_final"]),
        ("energy error of the reference trajectories", report["energy_error_truth"]),
        *[(f"rollout error at t = {k}", v) for k, v in report["rollout_error"].items()],
        (
            f"valid prediction time (rollout error ≤ {valid['threshold']:g}), mean",
            valid["mean"],
        ),
        ("valid prediction time, median", valid["median"]),
        ("failed rollouts", f"{report['failed_rollouts']} of {protocol['count']}"),
        ("evaluation time (s)", report["seconds"]),
    ]
    lines = [
        f"# Evaluation on {report['system'] or 'a dataset'}",
        "",
        f"The model was rolled out from {protocol['count']} initial states (and "
        f"compared with the reference) to t = {protocol['t_end']:g} with "
        f"{protocol['solver']} "
        f"(rtol {protocol['rtol']:g}, atol {protocol['atol']:g}, "
        f"{protocol['dtype']}); parameters: "
        + ", ".join(f"{k} = {v:g}" for k, v in report["params"].items())
        + ".",
        "",
        "| quantity | value |",
        "| --- | --- |",
        *[f"| {name} | {_format(value)} |" for name, value in rows],
        "",
        "## Over time (means over states)",
        "",
        "| t | energy error | rollout error |",
        "| --- | --- | --- |",
    ]
    over = report["over_time"]
    for t, e, r in zip(
        over["t"], over["energy_error"], over["rollout_error"], strict=True
    ):
        lines.append(f"| {t:g} | {_format(e)} | {_format(r)} |")
    lines += ["", "## Definitions", ""]
    for key in ("initial_states", "energy_error", "rollout_error"):
        lines.append(f"- {key.replace('_', ' ')}: {protocol[key]}.")
    lines.append(f"- valid prediction time: {protocol['valid_prediction_time']}.")
    if report["failures"]:
        lines += ["", "## Failed rollouts", ""]
        lines += [f"- state {f['state']}: {f['error']}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | os.PathLike, report: dict[str, Any]) -> list[Path]:
    """Write `report.json` (the `report_summary`) and a readable `report.md`.

    Each file is written atomically; the directory is created if missing.

    Returns:
        The paths written, JSON first.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = run_dir / "report.json", run_dir / "report.md"
    summary = report_summary(report)
    _atomic_write_text(json_path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _atomic_write_text(markdown_path, _markdown(summary))
    return [json_path, markdown_path]
