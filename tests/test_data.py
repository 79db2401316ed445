"""Datasets: files round-trip, bad input is refused clearly, derivatives converge."""

import h5py
import numpy as np
import pytest

from lddnn.data import (
    DataError,
    Dataset,
    flatten_samples,
    load,
    save,
    split,
    with_derivatives,
)


def _dataset(b=3, t=5, n=2, **overrides) -> Dataset:
    rng = np.random.default_rng(0)
    fields = dict(
        t=np.linspace(0.0, 1.0, t),
        q=rng.normal(size=(b, t, n)),
        qd=rng.normal(size=(b, t, n)),
        qdd=rng.normal(size=(b, t, n)),
        system="double-pendulum",
        params={"m1": 1.0, "g": 9.8},
        angles=(True,) * n,
    )
    return Dataset(**{**fields, **overrides})


@pytest.mark.parametrize("suffix", [".h5", ".hdf5", ".npz"])
def test_round_trip(tmp_path, suffix):
    dataset = _dataset()
    path = save(dataset, tmp_path / f"data{suffix}")
    loaded = load(path)
    for name in ("t", "q", "qd", "qdd"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(dataset, name))
    assert loaded.system == dataset.system
    assert loaded.params == dataset.params
    assert loaded.angles == dataset.angles


def test_round_trip_without_optional_fields(tmp_path):
    dataset = _dataset(qd=None, qdd=None, system=None, params={}, angles=None)
    loaded = load(save(dataset, tmp_path / "data.h5"))
    assert loaded.qd is None and loaded.qdd is None
    assert loaded.system is None and loaded.params == {} and loaded.angles is None


def test_hdf5_layout(tmp_path):
    path = save(_dataset(), tmp_path / "data.h5")
    with h5py.File(path) as file:
        assert set(file) == {"t", "q", "qd", "qdd"}
        assert file.attrs["format_version"] == 1
        assert file.attrs["system"] == "double-pendulum"


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_refusing_to_overwrite_keeps_the_file(tmp_path, suffix):
    path = save(_dataset(), tmp_path / f"data{suffix}")
    before = path.read_bytes()
    with pytest.raises(DataError, match="already exists.*overwrite=True"):
        save(_dataset(b=1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]

    save(_dataset(b=1), path, overwrite=True)
    assert load(path).num_trajectories == 1


def _write_h5(path, **arrays):
    with h5py.File(path, "w") as file:
        for name, value in arrays.items():
            file.create_dataset(name, data=value)
    return path


GOOD = dict(t=np.linspace(0, 1, 4), q=np.zeros((2, 4, 1)))


@pytest.mark.parametrize(
    "arrays, words",
    [
        (dict(q=GOOD["q"]), ["no field `t`"]),
        (dict(t=GOOD["t"]), ["no field `q`"]),
        (dict(GOOD, q=np.zeros((4, 1))), ["`q`", "(4, 1)", "(B, T, n)", "(1, T, n)"]),
        (dict(GOOD, q=np.zeros((2, 5, 1))), ["`q`", "5 times", "`t` has 4"]),
        (dict(GOOD, qd=np.zeros((2, 4, 2))), ["`qd`", "(2, 4, 2)", "(2, 4, 1)"]),
        (dict(GOOD, t=np.zeros((4, 1))), ["`t`", "1-D"]),
        (
            dict(GOOD, q=np.array([np.nan, np.inf, 0, np.nan]).reshape(1, 4, 1)),
            ["`q`", "2 NaN and 1 infinite", "repair"],
        ),
        (dict(GOOD, t=np.array([0.0, 1.0, 1.0, 2.0])), ["`t`", "not strictly", "t[2]"]),
        (dict(GOOD, q=np.zeros((2, 4, 1), complex)), ["`q`", "complex", "astype"]),
    ],
)
def test_bad_fields_are_refused(tmp_path, arrays, words):
    path = _write_h5(tmp_path / "bad.h5", **arrays)
    with pytest.raises(DataError) as error:
        load(path)
    message = str(error.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_bad_npz_field(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, t=GOOD["t"], q=np.full((1, 4, 1), np.inf))
    with pytest.raises(DataError, match=r"`q`.*bad\.npz.*0 NaN and 4 infinite"):
        load(path)


def test_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"unknown extension '\.csv'.*\.h5"):
        load(tmp_path / "data.csv")
    with pytest.raises(DataError, match="unknown extension"):
        save(_dataset(), tmp_path / "data.csv")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DataError, match=r"junk\.h5.*cannot be read as HDF5"):
        load(tmp_path / "junk.h5")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"junk\.npz.*cannot be read as a NumPy"):
        load(tmp_path / "junk.npz")


def test_dataset_validates_on_construction():
    with pytest.raises(DataError, match="`angles`.*length 1.*n = 2"):
        _dataset(angles=(True,))
    with pytest.raises(DataError, match="in the dataset"):
        _dataset(qdd=np.zeros((1, 1, 1)))


def _derivative_errors(count: int, uniform: bool) -> tuple[float, float]:
    """Max errors of q̇ and q̈ estimated from q = θ(t) wrapped to (−π, π]."""
    rng = np.random.default_rng(count)
    t = np.linspace(0.0, 2.0, count)
    if not uniform:
        t[1:-1] += rng.uniform(-0.3, 0.3, count - 2) * (t[1] - t[0])
    theta = 3.0 * t + np.sin(2.0 * t)  # winds past ±π, so unwrapping is needed
    wrapped = np.angle(np.exp(1j * theta))
    dataset = Dataset(t, wrapped[None, :, None], angles=(True,))
    estimate = with_derivatives(dataset)
    qd_error = np.abs(estimate.qd[0, :, 0] - (3.0 + 2.0 * np.cos(2.0 * t))).max()
    qdd_error = np.abs(estimate.qdd[0, :, 0] + 4.0 * np.sin(2.0 * t)).max()
    return qd_error, qdd_error


@pytest.mark.parametrize("uniform", [True, False])
def test_finite_differences_converge_at_second_order(uniform):
    counts = np.array([41, 81, 161, 321])
    errors = np.array([_derivative_errors(c, uniform) for c in counts])
    # Fit error ∝ h^p over the refinements (max norm, including the end points).
    steps = 1.0 / (counts - 1)
    for column in errors.T:
        order = np.polyfit(np.log(steps), np.log(column), 1)[0]
        assert 1.8 < order < 2.3


def test_measured_derivatives_are_kept():
    dataset = _dataset(qdd=None)
    filled = with_derivatives(dataset)
    np.testing.assert_array_equal(filled.qd, dataset.qd)
    expected = np.gradient(dataset.qd, dataset.t, axis=1, edge_order=2)
    np.testing.assert_allclose(filled.qdd, expected)


def test_too_few_samples_for_derivatives():
    with pytest.raises(DataError, match="at least 4 samples"):
        with_derivatives(_dataset(t=3, qd=None, qdd=None))


def test_flatten_samples():
    dataset = _dataset(b=3, t=5, n=2)
    q, qd, qdd = flatten_samples(dataset)
    assert q.shape == qd.shape == qdd.shape == (15, 2)
    np.testing.assert_array_equal(q[5 + 2], dataset.q[1, 2])
    with pytest.raises(DataError, match="with_derivatives"):
        flatten_samples(_dataset(qdd=None))


def test_split_by_trajectory_is_seeded_and_disjoint():
    dataset = _dataset(b=10)
    train, validation = split(dataset, 0.3, seed=1)
    assert (train.num_trajectories, validation.num_trajectories) == (7, 3)
    rows = {tuple(r.ravel()) for r in np.concatenate([train.q, validation.q])}
    assert len(rows) == 10
    again, _ = split(dataset, 0.3, seed=1)
    np.testing.assert_array_equal(again.q, train.q)
    other, _ = split(dataset, 0.3, seed=2)
    assert not np.array_equal(other.q, train.q)
    assert train.system == dataset.system and train.angles == dataset.angles


def test_split_single_trajectory_by_time():
    dataset = _dataset(b=1, t=10)
    train, validation = split(dataset, 0.2, seed=0)
    np.testing.assert_array_equal(train.t, dataset.t[:8])
    np.testing.assert_array_equal(validation.q, dataset.q[:, 8:])


def test_split_arguments():
    dataset = _dataset()
    train, validation = split(dataset, 0.0)
    assert train is dataset and validation is None
    with pytest.raises(ValueError, match="validation_fraction"):
        split(_dataset(), 1.0)
