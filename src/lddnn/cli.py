"""The `lddnn` command line: the only part of the library that prints.

Bad input raises a ValueError (or an OSError from the file system) somewhere below;
here it becomes one sentence on standard error and exit status 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="lddnn",
    help="Learn Lagrangians with neural networks and predict the motion they imply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


class Precision(str, Enum):
    float32 = "float32"
    float64 = "float64"


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _user_errors():
    """Turn the library's refusals of bad input into one message and exit status 2."""
    import equinox as eqx

    from lddnn.integrate import IntegrationError
    from lddnn.train import NonFiniteLossError

    try:
        yield
    except (ValueError, OSError, IntegrationError, NonFiniteLossError) as error:
        _fail(str(error).strip())
    except eqx.EquinoxRuntimeError as error:
        _fail(str(error).strip().splitlines()[0])


def _print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=float) + "\n")


@app.command()
def systems() -> None:
    """List the built-in systems and their parameters."""
    from lddnn import systems as registry

    table = Table(title="Built-in systems")
    for column in ("name", "coordinates", "parameters (defaults)", "description"):
        table.add_column(column)
    for name in registry.names():
        system = registry.get(name)
        params = ", ".join(f"{k}={v:g}" for k, v in system.default_params.items())
        table.add_row(name, ", ".join(system.coordinate_names), params, system.description)
    console.print(table)
    fields = Table(title="Built-in fields (Lagrangian densities on lattices)")
    for column in ("name", "grid", "parameters (defaults)", "description"):
        fields.add_column(column)
    for name in registry.field_names():
        system = registry.get(name)
        params = ", ".join(f"{k}={v:g}" for k, v in system.default_params.items())
        grid = f"{system.ndim}-D, {system.boundary}"
        fields.add_row(name, grid, params, system.description)
    console.print(fields)


def _parse_params(pairs: list[str] | None) -> dict[str, float]:
    params = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                f"The parameter {pair!r} is not of the form NAME=NUMBER; write e.g. "
                "--param g=9.81."
            )
    return params


ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="System parameter NAME=VALUE; repeatable."),
]


@app.command()
def simulate(
    system: Annotated[str, typer.Argument(help="A built-in system (see `lddnn systems`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HDF5 file to write.")],
    trajectories: Annotated[int, typer.Option(help="Number of initial states.")] = 16,
    t_end: Annotated[float, typer.Option(help="Final time.")] = 10.0,
    samples: Annotated[int, typer.Option(help="Samples per trajectory.")] = 201,
    seed: Annotated[int, typer.Option(help="Seed of the initial states.")] = 0,
    param: ParamOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Write ground-truth trajectories of a built-in system to an HDF5 file."""
    with _user_errors():
        import jax
        import numpy as np

        from lddnn import data
        from lddnn import systems as registry

        model = registry.get(system)
        params = model.params(**_parse_params(param))
        _check_positive(trajectories=trajectories, samples=samples - 1, t_end=t_end)
        if output.exists() and not overwrite:
            raise ValueError(
                f"{output} already exists; choose another path or pass --overwrite."
            )
        times = np.linspace(0.0, t_end, samples)
        key = jax.random.PRNGKey(seed)
        with jax.enable_x64(True):  # ground truth in float64, scoped to this call
            if isinstance(model, registry.FieldSystem):
                dataset = _field_dataset(
                    registry.simulate_field(model, key, trajectories, times, params)
                )
            else:
                dataset = registry.simulate(model, key, trajectories, times, params)
        data.save(dataset, output, overwrite=overwrite)
    console.print(f"wrote {trajectories} trajectories of {system} to {output}")


def _field_dataset(runs):
    from lddnn.data import FieldDataset

    return FieldDataset(
        runs.t, runs.phi, runs.lattice, phid=runs.phid, phidd=runs.phidd,
        system=runs.system, params=runs.params,
    )


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}.")


@app.command()
def bench(
    name: Annotated[
        str | None,
        typer.Argument(
            help="train-step, training-start, accuracy-double-pendulum, "
            "accuracy-double-pendulum-long (an hour), field-scaling or "
            "accuracy-sine-gordon; all but the hour-long one when omitted."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Run the benchmark suite (or one benchmark) and print a table or JSON."""
    with _user_errors():
        from lddnn import bench as suite

        names = [name] if name else list(suite.DEFAULT_SUITE)
        for benchmark in names:
            if benchmark not in suite.BENCHMARKS:
                suite.run(benchmark)  # raises the error that names the known ones
        results = {}
        for benchmark in names:
            if not as_json:
                console.print(f"running [bold]{benchmark}[/] ...")
            results[benchmark] = suite.run(benchmark)
    if as_json:
        _print_json(results[name] if name else results)
        return
    for benchmark, result in results.items():
        table = Table(title=benchmark)
        table.add_column("measure")
        table.add_column("value")
        for key, value in result.items():
            shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
            table.add_row(key, shown)
        console.print(table)


class Preset(str, Enum):
    demo = "demo"
    long = "long"
    structured = "structured"
    paper = "paper"


class ModelKind(str, Enum):
    mlp = "mlp"
    structured = "structured"


def _is_field(name: str) -> bool:
    from lddnn import systems as registry

    return name in registry.field_names()


def _field_system_params(config) -> dict:
    """The field's parameters with the run's overrides; refuses unknown names and
    a lattice that cannot be built, before anything is written."""
    from lddnn import systems as registry

    system = registry.get(config.system)
    params = system.params(**config.params)
    system.lattice(params)
    return params


def _train_config(base, **options):
    """The base configuration with the options the user gave (None = unchanged)."""
    from lddnn.train import TrainConfig

    chosen = {k: v for k, v in options.items() if v is not None}
    return TrainConfig.from_dict({**base.to_dict(), **chosen})


def _train_and_report(config, run_dir: Path, resume: bool, evaluate: bool) -> None:
    from lddnn import runs
    from lddnn._progress import progress_bar

    start = 0
    if resume:
        start = _completed_steps(run_dir)
    with progress_bar(config.train.steps, console=console, start_step=start) as bar:
        result = runs.train_run(config, run_dir, resume=resume, progress=bar)
    console.print(f"trained {result.steps} steps; model saved in {run_dir}")
    if evaluate:
        console.print("evaluating (rollouts of the learned and the true dynamics) ...")
        report = runs.evaluate_run(run_dir)
        _print_summary(report)


def _completed_steps(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return 0
    lines = metrics.read_text().strip().splitlines()
    return json.loads(lines[-1]).get("step", 0) if lines else 0


def _print_summary(report: dict) -> None:
    table = Table(title="evaluation")
    table.add_column("measure")
    table.add_column("value")
    for key in ("energy_error", "energy_error_truth", "rollout_error",
                "valid_prediction_time", "rollout_error_mean", "failed_rollouts",
                "field_error", "field_error_final", "energy_drift",
                "learned_energy_drift", "energy_drift_truth"):
        if key in report:
            value = report[key]
            shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
            table.add_row(key, shown)
    console.print(table)


@app.command()
def train(
    system: Annotated[
        str | None, typer.Argument(help="A built-in system to generate data for.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run directory to create.")
    ] = Path("runs/train"),
    data: Annotated[
        Path | None, typer.Option(help="Train on this HDF5/npz dataset instead.")
    ] = None,
    model: Annotated[
        ModelKind | None,
        typer.Option(help="Learnable Lagrangian; the preset's when omitted."),
    ] = None,
    width: Annotated[int | None, typer.Option(help="Hidden units per layer.")] = None,
    depth: Annotated[int | None, typer.Option(help="Hidden layers.")] = None,
    activation: Annotated[
        str | None, typer.Option(help="softplus, tanh or sigmoid.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimisation steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam's rate.")] = None,
    loss: Annotated[str | None, typer.Option(help="norm, mse or l1.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the run.")] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(help="Floating point; the preset's (float32, fields float64) "
                     "when omitted."),
    ] = None,
    early_stopping: Annotated[
        int | None, typer.Option(help="Validations without improvement to stop.")
    ] = None,
    preset: Annotated[
        Preset,
        typer.Option(
            help="Starting configuration: demo (minutes), long (under an hour), "
            "structured (L = ½q̇ᵀCCᵀq̇ − V), or paper (4x500 MLP, batch 32, no prior)."
        ),
    ] = Preset.demo,
    param: ParamOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output.")] = False,
    evaluate: Annotated[bool, typer.Option(help="Evaluate after training.")] = False,
) -> None:
    """Train a Lagrangian on a built-in system or on a dataset file."""
    with _user_errors():
        import dataclasses

        from lddnn import runs

        if (system is None) == (data is None):
            raise ValueError("Give either a SYSTEM or --data FILE (exactly one).")
        chosen = {"steps": steps, "batch_size": batch_size,
                  "learning_rate": learning_rate, "loss": loss, "seed": seed,
                  "precision": None if precision is None else precision.value,
                  "early_stopping": early_stopping}
        model_options = {k: v for k, v in
                         {"width": width, "depth": depth, "activation": activation}.items()
                         if v is not None}
        if system is not None and _is_field(system):
            from lddnn._field_runs import field_config

            base = field_config(system, **_parse_params(param))
            config = dataclasses.replace(
                base, model={**base.model, **model_options},
                train=_train_config(base.train, **chosen),
            )
            _field_system_params(config)
            run_dir = runs.prepare_run_dir(output, resume=resume)
            _train_and_report(config, run_dir, resume, evaluate)
            return
        base = runs.preset(preset.value)
        model_spec = {**base.model, **model_options}
        if model is not None and model.value != base.model["kind"]:
            model_spec = {"kind": model.value, **model_options}
        config = dataclasses.replace(
            base,
            system=system,
            params=_parse_params(param),
            data_file=None if data is None else str(data),
            model=model_spec,
            train=_train_config(base.train, **chosen),
        )
        if system is not None:
            from lddnn import systems as registry

            reference = registry.get(system)
            reference.params(**config.params)
            if reference.sample_state is None and config.data.sampling == "states":
                # The presets draw independent states where a system can; the
                # others are sampled along their trajectories.
                data_spec = dataclasses.replace(config.data, sampling="trajectories")
                config = dataclasses.replace(config, data=data_spec)
        run_dir = runs.prepare_run_dir(output, resume=resume)
        _train_and_report(config, run_dir, resume, evaluate)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory from `lddnn train`.")],
    data: Annotated[
        Path | None, typer.Option(help="Compare with these trajectories instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON.")] = (
        False
    ),
) -> None:
    """Roll out a trained model, score it, and write the report and figures."""
    with _user_errors():
        from lddnn import runs
        from lddnn.evaluate import report_summary

        report = report_summary(runs.evaluate_run(run_dir, data_file=data))
    if as_json:
        _print_json(report)
    else:
        _print_summary(report)
        console.print(f"report and figures written to {run_dir}")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory.")] = (
        Path("runs/demo")
    ),
) -> None:
    """Train a double-pendulum Lagrangian, roll it out, and write a report."""
    with _user_errors():
        from lddnn import runs

        if output.exists() and any(output.iterdir()):
            raise ValueError(
                f"{output} already holds a run; remove it or pass another --output."
            )
        config = runs.demo_config()
        console.print(
            "[bold]lddnn demo[/]: learning the Lagrangian of a double pendulum from "
            f"{_describe_data(config.data)}"
        )
        run_dir = runs.prepare_run_dir(output, resume=False)
        _train_and_report(config, run_dir, resume=False, evaluate=False)
        console.print("evaluating: 40 rollouts to t = 100, learned and true ...")
        report = runs.evaluate_run(run_dir)
        _print_summary(report)
        console.print(f"report, figures and checkpoint written to {run_dir}")


def _describe_data(spec) -> str:
    if spec.sampling == "states":
        return f"{spec.states} simulated states"
    return f"{spec.trajectories} simulated trajectories"


def main() -> None:
    """Entry point of the `lddnn` command."""
    app()


if __name__ == "__main__":
    main()
