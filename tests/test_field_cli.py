"""The command line on fields: simulate, train, evaluate, and refused input."""

import json

import numpy as np
from test_cli import assert_refused, invoke

from lddnn import data, load_model


def test_simulate_writes_a_field_dataset_with_its_lattice(tmp_path):
    path = tmp_path / "sg.h5"
    result = invoke(
        "simulate", "sine-gordon", "-o", path, "--trajectories", "2", "--t-end", "0.5",
        "--samples", "6", "-p", "sites=24",
    )
    assert result.exit_code == 0, result.output
    dataset = data.load(path)
    assert isinstance(dataset, data.FieldDataset)
    assert dataset.phi.shape == dataset.phidd.shape == (2, 6, 24)
    assert dataset.lattice.shape == (24,) and dataset.lattice.periodic == (True,)
    # The stored accelerations are the sine-Gordon equations at the stored states.
    phi, spacing = dataset.phi, dataset.params["spacing"]
    laplacian = (np.roll(phi, -1, -1) - 2 * phi + np.roll(phi, 1, -1)) / spacing**2
    np.testing.assert_allclose(dataset.phidd, laplacian - np.sin(phi), atol=1e-10)
    before = path.read_bytes()
    assert_refused(invoke("simulate", "sine-gordon", "-o", path), "exists")
    assert path.read_bytes() == before


def test_field_parameters_are_checked(tmp_path):
    assert_refused(
        invoke("simulate", "klein-gordon", "-o", tmp_path / "k.h5", "-p", "mass=2"),
        "mu",
    )
    assert_refused(
        invoke("train", "phi4", "-o", tmp_path / "r", "-p", "sites=2.5"), "sites"
    )
    assert not (tmp_path / "r").exists()


def test_a_field_run_trains_and_evaluates_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = invoke(
        "train", "wave1d", "-o", run, "--steps", "4", "--width", "8",
        "--batch-size", "4", "-p", "sites=16",
    )
    assert result.exit_code == 0, result.output
    hyperparams = json.loads((run / "model.json").read_text())
    assert hyperparams["kind"] == "density" and hyperparams["stencil_size"] == 3
    assert load_model(run / "model.eqx").stencil_size == 3
    # A short evaluation: the run's protocol is rewritten to a small one.
    config = json.loads((run / "run.json").read_text())
    config["evaluation"].update(sites=24, count=1, t_end=0.2, num_times=5, rtol=1e-6)
    (run / "run.json").write_text(json.dumps(config))
    result = invoke("evaluate", run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["protocol"]["sites"] == 24
    assert report["field_error"] >= 0 and report["energy_drift_truth"] < 1e-4
    for figure in ("spacetime.png", "energy.png", "loss.png", "report.md"):
        assert (run / figure).stat().st_size > 0
    assert_refused(invoke("evaluate", run, "--data", tmp_path / "x.h5"), "--data")
