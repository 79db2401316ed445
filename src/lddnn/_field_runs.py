"""Whole runs for fields: samples of a field system, a learned local density,
training, and evaluation by rollouts on a (usually larger) lattice.

A field run directory holds the same files as a mechanical one (`run.json` with
`"kind": "field"`, the training files, the saved density as `model.eqx` +
`model.json`, `report.json`, `report.md`, figures). The saved model is the density
alone: the lattice is part of the run configuration, so the same density can be put
on any lattice (`LatticeLagrangian(load_model(path), lattice)`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lddnn.train import TrainConfig

__all__ = [
    "FieldDataSpec",
    "FieldEvaluationSpec",
    "FieldRunConfig",
    "evaluate_field_run",
    "field_config",
    "field_samples",
    "train_field_run",
]


@dataclasses.dataclass(frozen=True)
class FieldDataSpec:
    """Training states: random smooth fields from the system's own sampler, with
    varied sizes, correlation lengths and offsets so that they cover more than a
    rollout visits, each with its exact acceleration from the hand-derived
    equations of motion (no finite differences).

    Per state: a correlation length from `length_range` × the system's, a field RMS
    from `amplitude_range` × the system's amplitude and a velocity RMS from
    `velocity_range` × the same, and constant offsets of the field and of the
    velocity uniform in ±`offset` and ±`velocity_offset`.
    """

    states: int = 8192
    length_range: tuple[float, float] = (0.25, 1.5)
    amplitude_range: tuple[float, float] = (0.05, 1.6)
    velocity_range: tuple[float, float] = (0.05, 1.6)
    offset: float = 0.0
    velocity_offset: float = 0.0
    groups: int = 16
    seed: int = 1


@dataclasses.dataclass(frozen=True)
class FieldEvaluationSpec:
    """Rollouts of the learned and the true dynamics from `count` states of the
    system's sampler on a chain (or grid) of `sites` per axis, saved at `num_times`
    times up to `t_end`, with Dopri5 at `rtol` = `atol`."""

    sites: int = 256
    count: int = 4
    t_end: float = 10.0
    num_times: int = 101
    rtol: float = 1e-10
    seed: int = 7


@dataclasses.dataclass(frozen=True)
class FieldRunConfig:
    """Everything that determines a field run; stored as `run.json`."""

    system: str
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    data: FieldDataSpec = FieldDataSpec()
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    evaluation: FieldEvaluationSpec = FieldEvaluationSpec()
    kind: str = "field"

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["train"] = self.train.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FieldRunConfig:
        values = dict(values)
        data = dict(values.get("data", {}))
        for name in ("length_range", "amplitude_range", "velocity_range"):
            if name in data:
                data[name] = tuple(data[name])
        values["data"] = FieldDataSpec(**data)
        values["evaluation"] = FieldEvaluationSpec(**values.get("evaluation", {}))
        values["train"] = TrainConfig.from_dict(values.get("train", {}))
        return cls(**values)


def field_config(system: str, **params) -> FieldRunConfig:
    """The default run for a field system: a 2 × 64 softplus density with the
    kinetic prior and parity symmetry, trained in float32 on a 32-site chain (16 × 16
    for a 2-D grid), evaluated in float64 on 256 sites per axis (64 in 2-D)."""
    from lddnn import systems

    reference = systems.get(system)
    two_d = getattr(reference, "ndim", 1) == 2
    params = {"sites": 16 if two_d else 32, **params}
    return FieldRunConfig(
        system=system,
        params=params,
        model={
            "kind": "density", "width": 64, "depth": 2, "kinetic": 1.0,
            "symmetric": True,
        },
        train=TrainConfig(
            steps=4000, batch_size=16, learning_rate=3e-3, schedule="cosine",
            warmup_steps=100, decay_factor=0.01, scale_accelerations=True,
            precision="float32", validation_fraction=0.05, validate_every=500,
            checkpoint_every=1000, log_every=50,
        ),
        evaluation=FieldEvaluationSpec(sites=64 if two_d else 256),
    )


def _field_system(name: str):
    from lddnn import systems
    from lddnn.systems import FieldSystem

    system = systems.get(name)
    if not isinstance(system, FieldSystem):
        raise ValueError(f"{name!r} is a mechanical system, not a field.")
    return system


# ------------------------------------------------------------------------ samples


def field_samples(system, params: dict, spec: FieldDataSpec):
    """`Samples(q, qd, qdd)` with the field flattened per state, (states, N)."""
    from lddnn.train import Samples

    rng = np.random.default_rng(spec.seed)
    sizes = np.full(spec.groups, spec.states // spec.groups)
    sizes[: spec.states % spec.groups] += 1
    parts = []
    with jax.enable_x64(True):
        for group, size in enumerate(sizes):
            if size == 0:
                continue
            length = params["correlation_length"] * rng.uniform(*spec.length_range)
            unit = {**params, "amplitude": 1.0, "correlation_length": length}
            keys = jax.random.split(jax.random.key(spec.seed * 7919 + group), size)
            phi, phid = jax.vmap(system.sample_initial_state, in_axes=(0, None))(
                keys, unit
            )
            parts.append(_varied(rng, phi, phid, params, spec))
        phi = jnp.concatenate([p[0] for p in parts])
        phid = jnp.concatenate([p[1] for p in parts])
        equations = jax.jit(
            jax.vmap(lambda a, b: system.equations_of_motion(a, b, 0.0, params))
        )
        phidd = equations(phi, phid)
    count = phi.shape[0]
    flat = [np.asarray(x).reshape(count, -1) for x in (phi, phid, phidd)]
    return Samples(*flat)


def _varied(rng, phi, phid, params, spec: FieldDataSpec):
    """Rescale unit-amplitude states to random sizes and add random offsets."""
    count = phi.shape[0]
    axes = (count,) + (1,) * (phi.ndim - 1)
    amplitude = params["amplitude"]
    size = amplitude * rng.uniform(*spec.amplitude_range, count).reshape(axes)
    rate = amplitude * rng.uniform(*spec.velocity_range, count).reshape(axes)
    shift = rng.uniform(-spec.offset, spec.offset, count).reshape(axes)
    drift = rng.uniform(-spec.velocity_offset, spec.velocity_offset, count)
    rms = jnp.sqrt(jnp.mean(phid**2, axis=tuple(range(1, phid.ndim)), keepdims=True))
    return shift + size * phi, drift.reshape(axes) + rate * phid / rms


# ----------------------------------------------------------------------- training


def _hyperparams(config: FieldRunConfig, lattice) -> dict[str, Any]:
    return {
        "dtype": config.train.precision,
        "seed": config.train.seed,
        **config.model,
        "stencil_size": lattice.stencil_size,
    }


def train_field_run(config: FieldRunConfig, run_dir: Path, *, resume=False, progress=None):
    """Train the run's density on its system's samples; returns the `TrainResult`."""
    from lddnn.field import LatticeLagrangian
    from lddnn.nn import make_model
    from lddnn.runs import RUN_FILE, _write_json
    from lddnn.train import train

    system = _field_system(config.system)
    params = system.params(**config.params)
    lattice = system.lattice(params)
    samples = field_samples(system, params, config.data)
    with jax.enable_x64(config.train.precision == "float64"):
        hyperparams = _hyperparams(config, lattice)
        density = make_model(**hyperparams)
        _write_json(Path(run_dir) / RUN_FILE, config.to_dict())
        # Conjugate gradients batch over the samples inside the compiled step; the
        # band solve is a host call made sample by sample (about 4× slower here).
        model = LatticeLagrangian(density, lattice, solver="cg")
        return train(
            model, samples, config.train, run_dir,
            resume=resume, progress=progress, hyperparams=hyperparams,
        )


# --------------------------------------------------------------------- evaluation


def _energies(lagrangian, q, qd, params=None) -> np.ndarray:
    from lddnn.mechanics import energy

    one = jax.jit(jax.vmap(lambda a, b: energy(lagrangian, a, b, 0.0, params)))
    return np.stack([np.asarray(one(a, b)) for a, b in zip(q, qd)])


def evaluate_field_model(density, system, params: dict, spec: FieldEvaluationSpec):
    """Roll out the learned density and the true field on the evaluation lattice
    and compare: relative L2 field error over time, and energy drift."""
    from lddnn.field import LatticeLagrangian
    from lddnn.integrate import rollout
    from lddnn.systems import rollout_field

    start = time.perf_counter()
    params = system.params(**{**params, "sites": spec.sites})
    lattice = system.lattice(params)
    keys = jax.random.split(jax.random.key(spec.seed), spec.count)
    phi0, phid0 = jax.vmap(system.sample_initial_state, in_axes=(0, None))(keys, params)
    t = jnp.linspace(0.0, spec.t_end, spec.num_times)
    phi_true, phid_true = rollout_field(
        system, phi0, phid0, t, params, rtol=spec.rtol, atol=spec.rtol
    )
    learned = LatticeLagrangian(density, lattice)
    flat = (spec.count, -1)
    q, qd = rollout(
        learned, phi0.reshape(flat), phid0.reshape(flat), t, rtol=spec.rtol,
        atol=spec.rtol,
    )
    phi_pred = q.reshape(phi_true.shape)
    truth = system.lagrangian(params)
    flat_true = (phi_true.reshape(spec.count, len(t), -1),
                 phid_true.reshape(spec.count, len(t), -1))
    energy_true = _energies(truth, *flat_true, params)
    energy_pred = _energies(truth, q, qd, params)
    energy_learned = _energies(learned, q, qd)
    scale = np.abs(energy_true[:, :1])
    axes = tuple(range(2, phi_true.ndim))
    difference = np.sqrt(np.sum((phi_pred - phi_true) ** 2, axis=(0,) + axes))
    norm = np.sqrt(np.sum(phi_true**2, axis=(0,) + axes))
    return {
        "system": system.name,
        "params": params,
        "field_error": float(np.linalg.norm(phi_pred - phi_true)
                             / np.linalg.norm(phi_true)),
        "field_error_final": float(difference[-1] / norm[-1]),
        "energy_drift": float(np.max(np.abs(energy_pred - energy_pred[:, :1]) / scale)),
        "learned_energy_drift": float(
            np.max(np.abs(energy_learned - energy_learned[:, :1]) / scale)
        ),
        "energy_drift_truth": float(
            np.max(np.abs(energy_true - energy_true[:, :1]) / scale)
        ),
        "protocol": {
            **dataclasses.asdict(spec),
            "lattice": lattice.describe() if lattice.ndim == 1 else {
                "shape": list(lattice.shape)},
            "field_error": "‖φ_pred − φ_true‖ / ‖φ_true‖ over all states, times, sites",
            "energy_drift": "max over states and times of |E_true(predicted state, t) − "
            "E_true(predicted state, 0)| / |E_true(0)|",
            "learned_energy_drift": "the same for the learned Lagrangian's energy",
        },
        "over_time": {
            "t": [float(x) for x in t[:: max(1, len(t) // 10)]],
            "field_error": [float(x) for x in (difference / norm)[:: max(1, len(t) // 10)]],
        },
        "seconds": time.perf_counter() - start,
        "arrays": {
            "t": np.asarray(t), "phi_true": np.asarray(phi_true),
            "phi_pred": np.asarray(phi_pred), "energy_true": energy_true,
            "energy_pred": energy_pred, "lattice": lattice,
        },
    }


def _markdown(report: dict) -> str:
    lines = [
        f"# Evaluation of a learned {report['system']} density", "",
        "| measure | value |", "| --- | --- |",
    ]
    for key in ("field_error", "field_error_final", "energy_drift",
                "learned_energy_drift", "energy_drift_truth", "seconds"):
        lines.append(f"| {key} | {report[key]:.4g} |")
    lines += ["", "Protocol:", ""]
    lines += [f"- {k}: {v}" for k, v in report["protocol"].items()]
    return "\n".join(lines) + "\n"


def evaluate_field_run(run_dir, config: FieldRunConfig, model_file, *, figures=True):
    """Evaluate a trained field run; write `report.json`, `report.md`, figures."""
    from lddnn.evaluate import _atomic_write_text
    from lddnn.nn import cast_model, load_model

    run_dir = Path(run_dir)
    system = _field_system(config.system)
    with jax.enable_x64(True):
        density = cast_model(load_model(model_file), np.float64)
        report = evaluate_field_model(density, system, config.params, config.evaluation)
    arrays = report.pop("arrays")
    _atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    _atomic_write_text(run_dir / "report.md", _markdown(report))
    if figures:
        _field_figures(run_dir, arrays)
    return report


def _field_figures(run_dir: Path, arrays: dict) -> None:
    from lddnn._plot_fields import plot_field_energy, plot_snapshots, plot_spacetime
    from lddnn.plot import plot_loss

    t, lattice = arrays["t"], arrays["lattice"]
    truth, prediction = arrays["phi_true"][0], arrays["phi_pred"][0]
    if lattice.ndim == 1:
        x = np.arange(lattice.shape[0]) * lattice.spacing[0]
        plot_spacetime(run_dir / "spacetime.png", t, x, truth, prediction)
    else:
        plot_snapshots(run_dir / "snapshots.png", t, truth, prediction)
    plot_field_energy(
        run_dir / "energy.png", t, arrays["energy_true"], arrays["energy_pred"]
    )
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        plot_loss(run_dir / "loss.png", metrics)
