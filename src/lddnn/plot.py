"""Figures of a run: predicted against true trajectories, energy error, loss curve.

Every function draws on its own `matplotlib.figure.Figure` and writes a PNG; pyplot
and the global backend are never touched, so plotting is safe in scripts, notebooks
and headless servers alike.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_energy_error", "plot_evaluation", "plot_loss", "plot_trajectories"]

_DPI = 120


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI)
    return path


def _wrapped_for_display(values: np.ndarray) -> np.ndarray:
    """An angle wrapped to (−π, π], with NaN at each wrap so no line spans it."""
    wrapped = np.pi - np.mod(np.pi - values, 2 * np.pi)
    jumps = np.abs(np.diff(wrapped, prepend=wrapped[:1])) > np.pi
    return np.where(jumps, np.nan, wrapped)


def plot_trajectories(
    path: str | os.PathLike,
    t,
    q_true,
    q_pred,
    *,
    angles: Sequence[bool] | None = None,
    coordinate_names: Sequence[str] | None = None,
    states: int = 3,
) -> Path:
    """Predicted (dashed) against true (solid) coordinates over time.

    One column per initial state (the first `states` of the batch), one row per
    coordinate; angles are shown wrapped to (−π, π].

    Arguments:
        path: the PNG to write.
        t: times, shape (T,).
        q_true, q_pred: coordinates, shape (B, T, n).
        angles: which coordinates are angles (n flags), or None for none.
        coordinate_names: labels of the n coordinates; "q0", "q1", ... by default.
        states: how many initial states to show.

    Returns:
        The path written.
    """
    t, q_true, q_pred = np.asarray(t), np.asarray(q_true), np.asarray(q_pred)
    count, n = min(states, q_true.shape[0]), q_true.shape[-1]
    angles = tuple(angles) if angles is not None else (False,) * n
    names = coordinate_names or [f"q{i}" for i in range(n)]
    figure = Figure(figsize=(3.2 * count + 0.8, 1.9 * n + 0.8), layout="constrained")
    axes = figure.subplots(n, count, sharex=True, squeeze=False)
    for column in range(count):
        axes[0, column].set_title(f"state {column}")
        axes[-1, column].set_xlabel("t")
        for row in range(n):
            show = _wrapped_for_display if angles[row] else np.asarray
            ax = axes[row, column]
            ax.plot(t, show(q_true[column, :, row]), "k-", lw=1.2, label="true")
            ax.plot(t, show(q_pred[column, :, row]), "C1--", lw=1.2, label="predicted")
    for row in range(n):
        axes[row, 0].set_ylabel(names[row])
    axes[0, 0].legend(loc="best", fontsize="small")
    return _save(figure, path)


def _positive(values: np.ndarray) -> np.ndarray:
    """Zeros (the initial state) and failed states have no place on a log axis."""
    return np.where(values > 0, values, np.nan)


def _statistics(values: np.ndarray) -> tuple[np.ndarray, ...]:
    """10th, 50th, 90th percentile and mean over states, ignoring NaN."""
    with warnings.catch_warnings():
        # Columns with no positive value (t = 0) are expected; they stay NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        low, median, high = np.nanpercentile(values, [10, 50, 90], axis=0)
        return low, median, high, np.nanmean(values, axis=0)


def plot_energy_error(path: str | os.PathLike, t, error, *, reference=None) -> Path:
    """Relative energy error against time on a logarithmic axis.

    Shows the median over initial states with the 10–90 % band and the mean;
    `reference` (same shape), e.g. the error of the true Lagrangian's rollout, marks
    the floor set by the solver.

    Arguments:
        path: the PNG to write.
        t: times, shape (T,).
        error: relative energy errors, shape (B, T) (NaN rows, failed rollouts, are
            ignored).
        reference: optional errors of a reference rollout, shape (B, T).

    Returns:
        The path written.
    """
    t, error = np.asarray(t), _positive(np.atleast_2d(np.asarray(error, float)))
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = figure.subplots()
    if np.isfinite(error).any():
        low, median, high, mean = _statistics(error)
        ax.fill_between(t, low, high, color="C0", alpha=0.25, label="10–90 %")
        ax.plot(t, median, "C0-", label="median")
        ax.plot(t, mean, "C0:", label="mean")
    if reference is not None:
        floor = _statistics(_positive(np.atleast_2d(np.asarray(reference, float))))
        ax.plot(t, floor[1], "k-", lw=0.8, label="reference")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("|E(t) − E(0)| / energy scale")
    ax.legend(loc="best", fontsize="small")
    return _save(figure, path)


def _read_metrics(metrics) -> list[dict[str, Any]]:
    if isinstance(metrics, str | os.PathLike):
        lines = Path(metrics).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    return list(metrics)


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], float)


def plot_loss(
    path: str | os.PathLike, metrics: str | os.PathLike | Iterable[dict]
) -> Path:
    """Training and validation loss against the step.

    Arguments:
        path: the PNG to write.
        metrics: a `metrics.jsonl` file (one JSON record per line with `step`,
            `loss` and, where validated, `validation_loss`) or the records.

    Returns:
        The path written.
    """
    records = _read_metrics(metrics)
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = figure.subplots()
    drawn = []
    for key, style, label in (
        ("loss", "C0-", "training"),
        ("validation_loss", "C3o-", "validation"),
    ):
        steps, values = _series(records, key)
        if steps.size:
            ax.plot(steps, values, style, ms=3, label=label)
            drawn.append(values)
    if drawn and all((v > 0).all() for v in drawn):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if drawn:
        ax.legend(loc="best", fontsize="small")
    return _save(figure, path)


def plot_evaluation(
    run_dir: str | os.PathLike,
    report: dict[str, Any],
    *,
    angles: Sequence[bool] | None = None,
    coordinate_names: Sequence[str] | None = None,
) -> list[Path]:
    """All figures of an evaluated run, from the arrays of `evaluate_model`'s report.

    Writes `trajectories.png`, `energy_error.png` when the report scores energies,
    and, when the run directory has a `metrics.jsonl`, `loss.png`.

    Returns:
        The paths written.
    """
    run_dir = Path(run_dir)
    arrays = report["arrays"]
    paths = [
        plot_trajectories(
            run_dir / "trajectories.png",
            arrays["t"],
            arrays["q_true"],
            arrays["q_pred"],
            angles=angles,
            coordinate_names=coordinate_names,
        )
    ]
    # Data without a known system has no true energy to score against.
    if "energy_error" in arrays:
        paths.append(
            plot_energy_error(
                run_dir / "energy_error.png",
                arrays["t"],
                arrays["energy_error"],
                reference=arrays.get("energy_error_truth"),
            )
        )
    if (run_dir / "metrics.jsonl").is_file():
        paths.append(plot_loss(run_dir / "loss.png", run_dir / "metrics.jsonl"))
    return paths
