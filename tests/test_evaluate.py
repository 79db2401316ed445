"""Evaluation: energy and rollout errors against hand-computed values, and reports."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lddnn.evaluate import (
    energy_error,
    evaluate_model,
    report_summary,
    rollout_error,
    valid_prediction_time,
    write_report,
)
from lddnn.plot import plot_evaluation, plot_trajectories


def _oscillator_lagrangian(q, qd, t, params):
    return 0.5 * params["m"] * qd @ qd - 0.5 * params["k"] * q @ q


@dataclasses.dataclass(frozen=True)
class Oscillator:
    """A hand-written stand-in with the interface of a reference system."""

    name: str = "harmonic-oscillator"
    n: int = 1
    angles: tuple[bool, ...] = (False,)
    default_params: tuple = (("m", 2.0), ("k", 3.0))

    def params(self, **overrides):
        return {**dict(self.default_params), **overrides}

    @staticmethod
    def lagrangian(q, qd, t, params):
        return _oscillator_lagrangian(q, qd, t, params)

    @staticmethod
    def energy_scale(params):
        return 2.0

    @staticmethod
    def sample_initial_state(key, params):
        q0 = jax.random.uniform(key, (1,), minval=-2.0, maxval=2.0)
        return q0, jnp.zeros(1)


def test_energy_error_vanishes_on_the_exact_solution():
    system = Oscillator()
    params = system.params()
    omega = np.sqrt(params["k"] / params["m"])
    t = np.linspace(0.0, 10.0, 101)
    amplitude = np.array([0.5, 1.0, 2.0])[:, None, None]
    q = amplitude * np.cos(omega * t)[None, :, None]
    qd = -amplitude * omega * np.sin(omega * t)[None, :, None]
    error = energy_error(system, params, q, qd)
    assert error.shape == (3, 101)
    assert np.abs(error).max() < 1e-14


def test_energy_error_of_a_perturbed_trajectory():
    system = Oscillator()  # m = 2, k = 3, energy scale 2
    q = np.array([[1.0], [1.0], [0.0]])
    qd = np.array([[0.0], [0.5], [2.0]])
    # E = ½·2·q̇² + ½·3·q² = 1.5, 1.75, 4.0, so drifts 0, 0.25, 2.5 over the scale 2.
    np.testing.assert_allclose(
        energy_error(system, system.params(), q, qd), [0.0, 0.125, 1.25], rtol=1e-14
    )


def test_rollout_error_wraps_angles():
    q_true = np.array([[np.pi - 0.1], [0.0]])
    q_pred = np.array([[-np.pi + 0.1], [0.0]])
    error = rollout_error(q_true, q_pred, angles=(True,))
    np.testing.assert_allclose(error, [0.2 / np.pi, 0.0], rtol=1e-12)


def test_rollout_error_is_relative_to_the_motion():
    t = np.linspace(0.0, 2 * np.pi, 1000, endpoint=False)
    q_true = np.stack([3.0 * np.sin(t), np.zeros_like(t)], axis=-1)
    q_pred = q_true + np.array([0.3, 0.0])
    # RMS of 3 sin t is 3/√2; the second coordinate does not move and is exact.
    expected = np.sqrt(0.5 * (0.3 / (3 / np.sqrt(2))) ** 2)
    np.testing.assert_allclose(rollout_error(q_true, q_pred), expected, rtol=1e-12)
    broken = q_pred.copy()
    broken[5:] = np.nan
    assert np.isinf(rollout_error(q_true, broken)[5:]).all()


def test_valid_prediction_time():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    error = np.array(
        [[0.0, 0.05, 0.2, 0.05], [0.0, 0.01, 0.02, 0.03], [0, np.nan, 0, 0]]
    )
    np.testing.assert_array_equal(valid_prediction_time(t, error, 0.1), [2.0, 3.0, 1.0])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="`q_true` has shape"):
        rollout_error(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="`angles` has 1 flags"):
        rollout_error(np.zeros((3, 2)), np.zeros((3, 2)), angles=(True,))
    with pytest.raises(ValueError, match="last axis of `error`"):
        valid_prediction_time(np.zeros(3), np.zeros((3, 2)), 0.1)


@pytest.fixture(scope="module")
def report():
    pytest.importorskip("lddnn.integrate")

    def model(q, qd, t, params):
        # The true dynamics, but the mass matrix vanishes where |q| > 1.5: states
        # drawn there cannot be rolled out and must be reported, not raised.
        stiffness = jnp.where(jnp.abs(q[0]) > 1.5, 0.0, 1.0)
        return stiffness * _oscillator_lagrangian(q, qd, t, params)

    return evaluate_model(model, Oscillator(), count=6, t_end=10.0, num_times=41)


def test_evaluate_model(report):
    states = report["arrays"]["q_true"][:, 0, 0]
    failed = sorted(f["state"] for f in report["failures"])
    assert failed == list(np.flatnonzero(np.abs(states) > 1.5))
    assert 0 < report["failed_rollouts"] < 6
    assert all("singular" in f["error"] for f in report["failures"])
    assert report["energy_error"] < 1e-6 and report["energy_error_truth"] < 1e-6
    assert set(report["rollout_error"]) == {"1", "3", "10"}
    assert max(report["rollout_error"].values()) < 1e-5
    assert report["valid_prediction_time"]["mean"] == pytest.approx(10.0)
    t = report["arrays"]["t"]
    assert {1.0, 3.0, 10.0} <= set(t.tolist()) and t.shape == (41,)


def test_write_report(tmp_path, report):
    json_path, markdown_path = write_report(tmp_path / "run", report)
    loaded = json.loads(json_path.read_text())
    assert loaded == json.loads(json.dumps(report_summary(report)))
    assert "arrays" not in loaded
    markdown = markdown_path.read_text()
    assert "| energy error (mean over states and times) |" in markdown
    assert "## Failed rollouts" in markdown


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    # Signature, then the IHDR chunk that every valid PNG starts with.
    return data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 1000


def test_figures_are_written_as_png(tmp_path, report):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = [{"step": s, "loss": 1.0 / s} for s in range(1, 50)]
    records[-1]["validation_loss"] = 0.05
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    (run_dir / "metrics.jsonl").write_text(text)
    paths = plot_evaluation(run_dir, report, angles=(False,), coordinate_names=["x"])
    names = ["trajectories.png", "energy_error.png", "loss.png"]
    assert [p.name for p in paths] == names
    assert all(_is_png(p) for p in paths)


def test_trajectory_figure_with_angles(tmp_path):
    t = np.linspace(0.0, 10.0, 200)
    q = np.stack([4.0 * t, np.sin(t)], axis=-1)[None]  # the angle winds past ±π
    path = plot_trajectories(tmp_path / "q.png", t, q, q + 0.1, angles=(True, False))
    assert _is_png(path)
