"""Whole runs: data for a system or from a file, a model, training, evaluation, figures.

A run directory holds `run.json` (everything needed to repeat the run), the training
loop's files (`config.json`, `metrics.jsonl`, `checkpoint.eqx`, `model.eqx` with
`model.json`), and after evaluation `report.json`, `report.md` and the figures.
This module returns values and writes files; printing is the command line's job.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lddnn import data as datafiles
from lddnn import systems
from lddnn.nn import cast_model, load_model, make_model
from lddnn.train import Samples, TrainConfig, train

RUN_FILE = "run.json"
MODEL_FILE = "model.eqx"
BEST_MODEL_FILE = "best_model.eqx"

__all__ = [
    "PRESETS",
    "DataSpec",
    "EvaluationSpec",
    "RunConfig",
    "demo_config",
    "evaluate_run",
    "load_run",
    "prepare_run_dir",
    "preset",
    "train_run",
    "training_samples",
]


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Training data generated from a built-in system.

    `sampling` is "trajectories" (`trajectories` true trajectories from the system's
    initial-state distribution, each saved at `samples_per_trajectory` times up to
    `t_end`) or "states" (`states` independent states from the system's
    `sample_state`, which covers the region those trajectories visit evenly; only
    systems that define it).
    """

    sampling: str = "trajectories"
    trajectories: int = 200
    t_end: float = 10.0
    samples_per_trajectory: int = 101
    states: int = 100_000
    seed: int = 1

    def __post_init__(self):
        if self.sampling not in ("trajectories", "states"):
            raise ValueError(
                f"Unknown sampling {self.sampling!r}; use 'trajectories' or 'states'."
            )


@dataclasses.dataclass(frozen=True)
class EvaluationSpec:
    """The rollout protocol of `lddnn.evaluate.evaluate_model`."""

    count: int = 40
    t_end: float = 100.0
    num_times: int = 1001
    seed: int = 0
    solver: str = "dopri5"
    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = 400_000


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run; stored as `run.json` in the run directory."""

    system: str | None = None
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    data_file: str | None = None
    data: DataSpec = DataSpec()
    model: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "mlp"})
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationSpec = EvaluationSpec()

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["train"] = self.train.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        values = dict(values)
        values["data"] = DataSpec(**values.get("data", {}))
        values["evaluation"] = EvaluationSpec(**values.get("evaluation", {}))
        values["train"] = TrainConfig.from_dict(values.get("train", {}))
        return cls(**values)


def demo_config() -> RunConfig:
    """The main job: a double-pendulum Lagrangian trained in minutes on a laptop CPU.

    See the README for how this configuration was chosen and what it reaches.
    """
    return RunConfig(
        system="double-pendulum",
        data=DataSpec(sampling="states", states=100_000),
        model={"kind": "mlp", "width": 128, "depth": 3, "kinetic": 1.0},
        train=TrainConfig(
            steps=60_000, batch_size=256, learning_rate=1e-3, schedule="cosine",
            warmup_steps=500, decay_factor=0.01, scale_accelerations=True,
            clip_norm=1.0, validation_fraction=0.1, validate_every=1000,
            checkpoint_every=5000, log_every=100,
        ),
    )


def long_config() -> RunConfig:
    """The demo's model on four times the states, trained four times longer
    (under an hour on two cores); see the README for what it reaches."""
    demo = demo_config()
    return dataclasses.replace(
        demo,
        data=DataSpec(sampling="states", states=400_000),
        train=dataclasses.replace(demo.train, steps=240_000),
    )


def structured_config() -> RunConfig:
    """The structured Lagrangian ½ q̇ᵀ C Cᵀ q̇ − V with the demo's data and
    optimizer."""
    return dataclasses.replace(
        demo_config(), model={"kind": "structured", "width": 64, "depth": 2}
    )


def paper_config() -> RunConfig:
    """The published configuration: a plain 4 × 500 softplus MLP Lagrangian (no
    kinetic prior), batch 32, Adam from 1e-3 with exponential decay."""
    return RunConfig(
        system="double-pendulum",
        model={"kind": "mlp", "width": 500, "depth": 4, "kinetic": 0.0},
        train=TrainConfig(
            steps=100_000, batch_size=32, learning_rate=1e-3, schedule="exponential",
            decay_steps=100_000, decay_factor=0.1, validation_fraction=0.1,
            validate_every=1000, checkpoint_every=5000, log_every=100,
        ),
    )


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "demo": demo_config,
    "long": long_config,
    "structured": structured_config,
    "paper": paper_config,
}


def preset(name: str) -> RunConfig:
    """The named run configuration: "demo", "long", "structured" or "paper"."""
    if name not in PRESETS:
        raise ValueError(
            f"There is no preset named {name!r}; choose one of {', '.join(PRESETS)}."
        )
    return PRESETS[name]()


# ------------------------------------------------------------------------------ data


def _system_of(config: RunConfig, dataset=None):
    name = config.system or (dataset.system if dataset is not None else None)
    return None if name is None else systems.get(name)


def _generated_dataset(config: RunConfig):
    system = systems.get(config.system)
    params = system.params(**config.params)
    spec = config.data
    # Ground truth is always computed in float64, whatever precision trains on it.
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(spec.seed)
        if spec.sampling == "states":
            return systems.sample_states(system, key, spec.states, params)
        t = np.linspace(0.0, spec.t_end, spec.samples_per_trajectory)
        return systems.simulate(system, key, spec.trajectories, t, params)


def load_dataset(config: RunConfig):
    """The run's dataset: read from `data_file`, or generated for `system`."""
    if config.data_file is not None:
        return datafiles.with_derivatives(datafiles.load(config.data_file))
    if config.system is None:
        raise ValueError("A run needs a built-in system or a data file; give one.")
    return _generated_dataset(config)


def training_samples(dataset) -> Samples:
    """Every state of the dataset as a training sample (q, q̇, q̈)."""
    q, qd, qdd = datafiles.flatten_samples(dataset)
    return Samples(q, qd, qdd)


# --------------------------------------------------------------------------- running


def prepare_run_dir(run_dir: str | os.PathLike, *, resume: bool) -> Path:
    """Create the run directory, refusing to overwrite an existing run.

    A new run needs a directory that does not exist or is empty; resuming needs the
    directory of an earlier run. Writability is tested before any training starts.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / RUN_FILE).is_file():
            raise ValueError(
                f"There is no run to resume in {run_dir} (no {RUN_FILE}); start a new "
                "run without --resume."
            )
        return run_dir
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(
            f"The output directory {run_dir} exists and is not empty; choose a new "
            "directory, or pass --resume to continue the run in it."
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"The output directory {run_dir} cannot be written ({error.strerror}); "
            "choose a directory you can write to."
        ) from None
    return run_dir


def _model_hyperparams(config: RunConfig, dataset) -> dict[str, Any]:
    system = _system_of(config, dataset)
    hyperparams = {"dtype": config.train.precision, **config.model}
    hyperparams.setdefault("kind", "mlp")
    hyperparams["n"] = int(dataset.n)
    if "angles" not in hyperparams:
        angles = system.angles if system is not None else dataset.angles
        hyperparams["angles"] = list(angles) if angles is not None else None
    hyperparams.setdefault("seed", config.train.seed)
    return hyperparams


def train_run(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: Callable[[int, dict], None] | None = None,
):
    """Train the run's model and store it in `run_dir`; returns the `TrainResult`.

    The run's precision holds inside this call only (a scoped `jax.enable_x64`), so
    the caller's global JAX flags are left as they were.
    """
    from lddnn._field_runs import FieldRunConfig, train_field_run

    if isinstance(config, FieldRunConfig):
        if resume:
            stored = load_run(run_dir)
            steps = dataclasses.replace(stored.train, steps=config.train.steps)
            config = dataclasses.replace(stored, train=steps)
        return train_field_run(config, Path(run_dir), resume=resume, progress=progress)
    with jax.enable_x64(config.train.precision == "float64"):
        return _train_run(config, Path(run_dir), resume, progress)


def _train_run(config: RunConfig, run_dir: Path, resume: bool, progress):
    if resume:
        stored = load_run(run_dir)
        # Only the number of steps may change when a run is extended.
        config = dataclasses.replace(
            stored, train=dataclasses.replace(stored.train, steps=config.train.steps)
        )
    dataset = load_dataset(config)
    hyperparams = _model_hyperparams(config, dataset)
    model = make_model(**hyperparams)
    _write_json(run_dir / RUN_FILE, config.to_dict())
    return train(
        model, training_samples(dataset), config.train, run_dir, resume=resume,
        progress=progress, hyperparams=hyperparams,
    )


def model_path(run_dir: str | os.PathLike) -> Path:
    """The model a run is evaluated with: the one with the lowest validation loss
    when the run held out validation data, otherwise the model after the last step."""
    run_dir = Path(run_dir)
    best = run_dir / BEST_MODEL_FILE
    return best if best.is_file() else run_dir / MODEL_FILE


def load_run(run_dir: str | os.PathLike) -> RunConfig:
    """The configuration stored in a run directory."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ValueError(
            f"{run_dir} is not a run directory (it has no {RUN_FILE}); pass the "
            "directory that `lddnn train` wrote."
        )
    values = json.loads(path.read_text())
    if values.get("kind") == "field":
        from lddnn._field_runs import FieldRunConfig

        return FieldRunConfig.from_dict(values)
    return RunConfig.from_dict(values)


def _write_json(path: Path, value) -> None:
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


# ------------------------------------------------------------------------ evaluating


def evaluate_run(run_dir: str | os.PathLike, *, data_file=None, figures: bool = True):
    """Evaluate a trained run and write `report.json`, `report.md` and figures.

    Without `data_file` the model is rolled out on its system's protocol
    (`EvaluationSpec`); with one, from the first state of each stored trajectory and
    compared with the stored trajectories.
    """
    from lddnn.evaluate import write_report

    run_dir = Path(run_dir)
    config = load_run(run_dir)
    if getattr(config, "kind", None) == "field":
        from lddnn._field_runs import evaluate_field_run

        if data_file is not None:
            raise ValueError(
                "Field runs are evaluated on their system's own rollouts; leave out "
                "--data."
            )
        return evaluate_field_run(run_dir, config, model_path(run_dir), figures=figures)
    # Rollouts to t = 100 need float64 states; the weights follow them. The scope
    # keeps the caller's global JAX flags untouched.
    with jax.enable_x64(True):
        model = cast_model(load_model(model_path(run_dir)), np.float64)
        report = _evaluate(model, config, run_dir, data_file)
    write_report(run_dir, report)
    if figures:
        _figures(run_dir, report, config)
    return report


def _evaluate(model, config: RunConfig, run_dir: Path, data_file) -> dict[str, Any]:
    from lddnn.evaluate import evaluate_model

    if data_file is not None:
        dataset = datafiles.load(data_file)
        report = evaluate_on_dataset(model, dataset, config, name=str(data_file))
    else:
        system = _system_of(config)
        if system is None:
            raise ValueError(
                f"The run in {run_dir} was trained on a data file without a known "
                "system; pass --data FILE with trajectories to compare against."
            )
        spec = dataclasses.asdict(config.evaluation)
        report = evaluate_model(model, system, config.params, **spec)
    return report


def _figures(run_dir: Path, report: dict, config: RunConfig) -> None:
    from lddnn.plot import plot_evaluation

    system = _system_of(config)
    names = system.coordinate_names if system is not None else None
    angles = system.angles if system is not None else None
    plot_evaluation(run_dir, report, angles=angles, coordinate_names=names)


def evaluate_on_dataset(
    model, dataset, config: RunConfig, name: str = "the dataset"
) -> dict[str, Any]:
    """Roll the model out from each stored trajectory's first state and compare."""
    from lddnn.evaluate import evaluate_trajectories

    dataset = datafiles.with_derivatives(dataset)
    system = _system_of(config, dataset)
    spec = config.evaluation
    return evaluate_trajectories(
        model, dataset.t, dataset.q, dataset.qd, system,
        dataset.params or config.params, angles=dataset.angles,
        solver=spec.solver, rtol=spec.rtol, atol=spec.atol, max_steps=spec.max_steps,
        source=f"trajectories of {name}",
    )
