"""The command line: every command answers --help, bad input exits 2 with one sentence
and no traceback, nothing on disk is overwritten, and a small run works end to end."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from lddnn import load_model
from lddnn.cli import app

runner = CliRunner()
COMMANDS = ["systems", "simulate", "train", "evaluate", "bench", "demo"]
SMALL_MODEL = ["--width", "16", "--depth", "2", "--batch-size", "64"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_systems_lists_the_reference_systems():
    result = invoke("systems")
    assert result.exit_code == 0
    assert "double-pendulum" in result.output and "kepler" in result.output


def test_unknown_system_is_refused(tmp_path):
    assert_refused(invoke("simulate", "triple-pendulum", "-o", tmp_path / "x.h5"),
                   "triple-pendulum")
    assert_refused(invoke("train", "triple-pendulum", "-o", tmp_path / "run"),
                   "triple-pendulum")
    assert not (tmp_path / "x.h5").exists()


def test_unknown_parameter_is_refused(tmp_path):
    result = invoke("simulate", "pendulum", "-o", tmp_path / "x.h5", "-p", "mass=2")
    assert_refused(result, "mass")
    assert_refused(invoke("simulate", "pendulum", "-o", tmp_path / "x.h5", "-p", "g"),
                   "NAME=NUMBER")


def test_existing_file_is_not_overwritten(tmp_path):
    target = tmp_path / "data.h5"
    target.write_bytes(b"precious")
    result = invoke("simulate", "pendulum", "-o", target, "--trajectories", "2")
    assert_refused(result, "already exists", "--overwrite")
    assert target.read_bytes() == b"precious"


def test_non_empty_run_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = invoke("train", "pendulum", "-o", tmp_path, "--steps", "5")
    assert_refused(result, "not empty")
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_unwritable_run_directory_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_refused(invoke("train", "pendulum", "-o", blocker / "run"), "cannot be written")


def test_system_and_data_are_exclusive(tmp_path):
    assert_refused(invoke("train", "-o", tmp_path / "run"), "exactly one")


def write_h5(path, **fields):
    with h5py.File(path, "w") as handle:
        for name, value in fields.items():
            handle[name] = value


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"t": np.linspace(0, 1, 5)}, ["q"]),
        ({"t": np.linspace(0, 1, 5), "q": np.full((2, 5, 1), np.nan)}, ["NaN"]),
        ({"t": np.array([0.0, 1.0, 1.0, 2.0, 3.0]), "q": np.zeros((2, 5, 1))},
         ["increasing"]),
        ({"t": np.linspace(0, 1, 5), "q": np.zeros((2, 4, 1))}, ["shape"]),
    ],
)
def test_bad_datasets_are_refused(tmp_path, fields, words):
    path = tmp_path / "bad.h5"
    write_h5(path, **fields)
    assert_refused(invoke("train", "--data", path, "-o", tmp_path / "run"), *words)


def test_missing_data_file_is_refused(tmp_path):
    assert_refused(invoke("train", "--data", tmp_path / "nope.h5", "-o", tmp_path / "r"))


def test_not_a_run_directory_is_refused(tmp_path):
    assert_refused(invoke("evaluate", tmp_path), "run directory")


def test_unknown_preset_is_refused(tmp_path):
    assert_refused(invoke("train", "pendulum", "-o", tmp_path / "r", "--preset", "huge"),
                   "huge")
    assert not (tmp_path / "r").exists()


def test_unknown_benchmark_is_refused():
    assert_refused(invoke("bench", "warp-drive"), "train-step")


def test_refusal_from_the_installed_command_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lddnn.cli", "train", "nowhere", "-o", tmp_path / "r"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "nowhere" in result.stderr


def test_simulate_train_evaluate_end_to_end(tmp_path):
    data = tmp_path / "oscillator.h5"
    result = invoke("simulate", "harmonic-oscillator", "-o", data, "--trajectories",
                    "8", "--t-end", "6", "--samples", "61")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = invoke("train", "--data", data, "-o", run, "--steps", "300",
                    "--learning-rate", "3e-3", *SMALL_MODEL)
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", run, "--data", data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # A harmonic oscillator learned from 8 trajectories: rollouts to t = 6 stay close.
    assert report["rollout_error_mean"] < 0.1
    assert (run / "report.md").is_file() and (run / "trajectories.png").is_file()


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    common = ["harmonic-oscillator", "--seed", "3", *SMALL_MODEL]
    assert invoke("train", *common, "-o", tmp_path / "whole", "--steps", "60").exit_code == 0
    assert invoke("train", *common, "-o", tmp_path / "part", "--steps", "30").exit_code == 0
    result = invoke("train", *common, "-o", tmp_path / "part", "--steps", "60", "--resume")
    assert result.exit_code == 0, result.output
    whole = load_model(tmp_path / "whole" / "model.eqx")
    part = load_model(tmp_path / "part" / "model.eqx")
    for a, b in zip(jax_leaves(whole), jax_leaves(part)):
        np.testing.assert_array_equal(a, b)


def jax_leaves(model):
    import equinox as eqx
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]
