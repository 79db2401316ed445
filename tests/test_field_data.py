"""Field datasets on disk, and the figures of field rollouts."""

import json

import h5py
import numpy as np
import pytest

from lddnn import data, lattice
from lddnn._plot_fields import plot_field_energy, plot_snapshots, plot_spacetime


def _dataset(grid, components=None, complex_field=False, **fields):
    rng = np.random.default_rng(0)
    shape = (2, 3) + grid.shape + (() if components is None else (components,))
    phi = rng.normal(size=shape)
    if complex_field:
        phi = phi + 1j * rng.normal(size=shape)
    return data.FieldDataset(
        np.linspace(0.0, 1.0, 3), phi, grid, system="membrane2d",
        params={"c": 1.5}, **fields,
    )


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@pytest.mark.parametrize(
    "grid",
    [
        lattice.chain(6, spacing=0.25, boundary="fixed"),
        lattice.grid((4, 5), boundary=("fixed", "periodic"), stencil="box"),
        lattice.graph([[1, 2], [0], [0]]),
    ],
)
def test_field_datasets_round_trip(tmp_path, suffix, grid):
    original = _dataset(grid, phid=np.ones((2, 3) + grid.shape))
    back = data.load(data.save(original, tmp_path / f"field{suffix}"))
    assert isinstance(back, data.FieldDataset)
    assert back.lattice.describe() == grid.describe()
    np.testing.assert_array_equal(back.phi, original.phi)
    np.testing.assert_array_equal(back.phid, original.phid)
    assert back.phidd is None
    assert (back.system, back.params) == ("membrane2d", {"c": 1.5})


def test_complex_and_multicomponent_fields_keep_their_type(tmp_path):
    grid = lattice.chain(5)
    for dataset in (_dataset(grid, complex_field=True), _dataset(grid, components=2)):
        back = data.load(data.save(dataset, tmp_path / f"f{dataset.phi.ndim}.h5"))
        assert back.phi.dtype == dataset.phi.dtype
        assert back.components == dataset.components


def test_field_dataset_refuses_a_field_that_does_not_fit_the_lattice():
    with pytest.raises(data.DataError, match=r"\(B, 3, 4, 5\[, c\]\)"):
        data.FieldDataset(np.linspace(0, 1, 3), np.zeros((2, 3, 4)), lattice.grid((4, 5)))
    with pytest.raises(data.DataError, match="NaN"):
        data.FieldDataset(np.linspace(0, 1, 3), np.full((1, 3, 4), np.nan),
                          lattice.chain(4))
    with pytest.raises(data.DataError, match="phid"):
        data.FieldDataset(np.linspace(0, 1, 3), np.zeros((1, 3, 4)), lattice.chain(4),
                          phid=np.zeros((1, 3, 5)))


def test_a_field_file_without_its_lattice_is_refused(tmp_path):
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as file:
        file["t"] = np.linspace(0, 1, 3)
        file["phi"] = np.zeros((1, 3, 4))
        file.attrs["params"] = json.dumps({})
    with pytest.raises(data.DataError, match="lattice"):
        data.load(path)


def test_field_figures_are_written(tmp_path):
    t, x = np.linspace(0, 1, 5), np.linspace(0, 1, 8)
    truth = np.sin(x[None] - t[:, None])
    assert plot_spacetime(tmp_path / "st.png", t, x, truth, truth + 0.01).stat().st_size
    cube = np.random.default_rng(0).normal(size=(5, 6, 7))
    assert plot_snapshots(tmp_path / "snap.png", t, cube, cube).stat().st_size
    energy = 1.0 + 1e-6 * np.random.default_rng(1).normal(size=(2, 5))
    assert plot_field_energy(tmp_path / "e.png", t, energy, energy).stat().st_size
