"""Figures of field rollouts: space-time images, snapshots of 2-D fields, energy.

Like `lddnn.plot`, every function draws on its own Figure and writes a PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lddnn.plot import _save

__all__ = ["plot_field_energy", "plot_snapshots", "plot_spacetime"]


def _display(values: np.ndarray) -> np.ndarray:
    """A real image of a field: itself, or |φ| for a complex or multi-component one."""
    values = np.asarray(values)
    if np.iscomplexobj(values):
        return np.abs(values)
    return values


def plot_spacetime(path: str | os.PathLike, t, x, truth, prediction) -> Path:
    """Three space-time images of a 1-D field: truth, prediction, their difference.

    Arguments:
        path: the PNG to write.
        t: times (T,); x: site positions (N,).
        truth, prediction: the field, shape (T, N) (complex: |φ| is shown).

    Returns:
        The path written.
    """
    t, x = np.asarray(t), np.asarray(x)
    truth, prediction = _display(truth), _display(prediction)
    difference = prediction - truth
    figure = Figure(figsize=(11.0, 3.6), layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    limit = float(np.max(np.abs(truth))) or 1.0
    extent = (x[0], x[-1], t[0], t[-1])
    for ax, image, title in (
        (axes[0], truth, "truth"),
        (axes[1], prediction, "prediction"),
    ):
        shown = ax.imshow(
            image, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r",
            vmin=-limit, vmax=limit, interpolation="nearest",
        )
        ax.set_title(title)
        ax.set_xlabel("x")
    figure.colorbar(shown, ax=axes[:2], shrink=0.9)
    spread = float(np.max(np.abs(difference))) or 1.0
    shown = axes[2].imshow(
        difference, origin="lower", aspect="auto", extent=extent, cmap="PuOr",
        vmin=-spread, vmax=spread, interpolation="nearest",
    )
    axes[2].set_title(f"prediction − truth (max {spread:.2g})")
    axes[2].set_xlabel("x")
    figure.colorbar(shown, ax=axes[2], shrink=0.9)
    axes[0].set_ylabel("t")
    return _save(figure, path)


def plot_snapshots(path: str | os.PathLike, t, truth, prediction, count: int = 4) -> Path:
    """Snapshots of a 2-D field at `count` times: truth above, prediction below.

    Arguments:
        t: times (T,); truth, prediction: shape (T, nx, ny).
    """
    t = np.asarray(t)
    truth, prediction = _display(truth), _display(prediction)
    picks = np.linspace(0, len(t) - 1, count).round().astype(int)
    figure = Figure(figsize=(2.6 * count, 5.2), layout="constrained")
    axes = figure.subplots(2, count, squeeze=False)
    limit = float(np.max(np.abs(truth))) or 1.0
    for column, index in enumerate(picks):
        for row, (images, label) in enumerate(
            ((truth, "truth"), (prediction, "prediction"))
        ):
            ax = axes[row, column]
            shown = ax.imshow(
                images[index].T, origin="lower", cmap="RdBu_r", vmin=-limit,
                vmax=limit, interpolation="nearest",
            )
            ax.set_title(f"{label}, t = {t[index]:.3g}", fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
    figure.colorbar(shown, ax=axes, shrink=0.8)
    return _save(figure, path)


def plot_field_energy(path: str | os.PathLike, t, truth, prediction) -> Path:
    """The total energy against time along the true and the predicted rollouts,
    relative to its initial value: (E(t) − E(0)) / |E(0)|, one line per run."""
    t = np.asarray(t)
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = figure.subplots()
    for values, style, label in ((truth, "k-", "truth"), (prediction, "C0-", "prediction")):
        values = np.atleast_2d(np.asarray(values, float))
        relative = (values - values[:, :1]) / np.maximum(np.abs(values[:, :1]), 1e-300)
        for i, row in enumerate(relative):
            ax.plot(t, row, style, lw=0.9, alpha=0.8, label=label if i == 0 else None)
    ax.set_xlabel("t")
    ax.set_ylabel("(E(t) − E(0)) / |E(0)|")
    ax.legend(loc="best", fontsize="small")
    return _save(figure, path)
