"""Trajectory datasets of mechanical systems and fields: the container, files, derivatives, splits.

A dataset holds B trajectories sampled at T common times: `t` (T,), coordinates `q`
(B, T, n) and optionally velocities `qd` and accelerations `qdd` (B, T, n), with the
system's name, its parameters and which coordinates are angles. On disk it is one HDF5
file (datasets `t`, `q`, `qd`, `qdd`; attributes `system`, `params` and `angles` as
JSON, `format_version`); `.npz` archives with the same names are read and written too.
Field datasets (`FieldDataset`: `phi` (B, T, *grid) on a lattice) share the files,
the atomic writing and the checks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lddnn import _field_data
from lddnn._field_data import FieldDataset

__all__ = [
    "DataError",
    "Dataset",
    "FieldDataset",
    "flatten_samples",
    "load",
    "save",
    "split",
    "with_derivatives",
]

FORMAT_VERSION = 1
_HDF5_SUFFIXES = (".h5", ".hdf5")
_NPZ_SUFFIXES = (".npz",)
_STATE_FIELDS = ("q", "qd", "qdd")
_ARRAY_NAMES = ("t",) + _STATE_FIELDS + _field_data.FIELD_NAMES


class DataError(ValueError):
    """A dataset or data file is malformed; the message names the file, the field,
    what was expected and found, and how to fix it."""


def _where(source: str | os.PathLike | None) -> str:
    return "in the dataset" if source is None else f"in file '{source}'"


def _as_real_array(value, name: str, source) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        # Integer samples (e.g. times in steps) are valid data, just not yet floats.
        return array.astype(np.float64)
    if array.dtype.kind != "f":
        raise DataError(
            f"Field `{name}` {_where(source)} has dtype {array.dtype}, but mechanical "
            "data must be real floating-point numbers; convert it with "
            "`.astype(float)`."
        )
    return array


def _check_finite(array: np.ndarray, name: str, source) -> None:
    nans = int(np.isnan(array).sum())
    infs = int(np.isinf(array).sum())
    if nans or infs:
        raise DataError(
            f"Field `{name}` {_where(source)} contains {nans} NaN and {infs} infinite "
            f"values out of {array.size}; remove or repair those samples before use."
        )


def _check_times(t: np.ndarray, source) -> None:
    if t.ndim != 1:
        raise DataError(
            f"Field `t` {_where(source)} has shape {t.shape}, but it must be 1-D with "
            "shape (T,): one time per sample, shared by all trajectories."
        )
    _check_finite(t, "t", source)
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0)) + 1
        raise DataError(
            f"Field `t` {_where(source)} is not strictly increasing (t[{i}] = {t[i]:g} "
            f"follows t[{i - 1}] = {t[i - 1]:g}); sort the samples by time and drop "
            "repeated times."
        )


def _check_state_field(array: np.ndarray, name: str, expected, source) -> None:
    """`expected` is (T,) for `q` and the shape of `q` for `qd` and `qdd`."""
    if array.ndim != 3:
        raise DataError(
            f"Field `{name}` {_where(source)} has shape {array.shape}, but it must be "
            "3-D with shape (B, T, n) (trajectories, times, coordinates); store a "
            "single trajectory as shape (1, T, n)."
        )
    if name == "q" and array.shape[1] != expected[0]:
        raise DataError(
            f"Field `q` {_where(source)} has {array.shape[1]} times (shape "
            f"{array.shape}) but `t` has {expected[0]}; both must describe the same "
            "samples, so `q` must have shape (B, T, n) with T = len(t)."
        )
    if name != "q" and array.shape != expected:
        raise DataError(
            f"Field `{name}` {_where(source)} has shape {array.shape} but `q` has "
            f"shape {expected}; velocities and accelerations must match the "
            "coordinates sample for sample."
        )
    _check_finite(array, name, source)


@dataclasses.dataclass(eq=False)  # arrays have no single truth value for ==
class Dataset:
    """B trajectories of an n-coordinate system sampled at T common times.

    Attributes:
        t: sample times, shape (T,), strictly increasing.
        q: coordinates, shape (B, T, n).
        qd: velocities q̇, shape (B, T, n), or None when not measured.
        qdd: accelerations q̈, shape (B, T, n), or None when not measured.
        system: name of the system (e.g. "double-pendulum"), or None.
        params: the system's non-dynamical parameters (masses, lengths, ...).
        angles: which coordinates are angles (length n), or None for none.

    The fields are validated on construction; `DataError` names what is wrong.
    """

    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray | None = None
    qdd: np.ndarray | None = None
    system: str | None = None
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    angles: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str | os.PathLike | None = None) -> None:
        """Check shapes, finiteness and increasing times; `source` names the file."""
        self.t = _as_real_array(self.t, "t", source)
        _check_times(self.t, source)
        self.q = _as_real_array(self.q, "q", source)
        _check_state_field(self.q, "q", self.t.shape, source)
        for name in ("qd", "qdd"):
            value = getattr(self, name)
            if value is not None:
                value = _as_real_array(value, name, source)
                _check_state_field(value, name, self.q.shape, source)
                setattr(self, name, value)
        self.params = dict(self.params or {})
        self._validate_angles(source)

    def _validate_angles(self, source) -> None:
        if self.angles is None:
            return
        self.angles = tuple(bool(a) for a in self.angles)
        if len(self.angles) != self.n:
            raise DataError(
                f"The `angles` flags {_where(source)} have length {len(self.angles)} "
                f"but the coordinates `q` have n = {self.n}; give one flag per "
                "coordinate (True where the coordinate is an angle)."
            )

    @property
    def n(self) -> int:
        """Number of coordinates."""
        return self.q.shape[2]

    @property
    def num_trajectories(self) -> int:
        """Number of trajectories B."""
        return self.q.shape[0]

    @property
    def num_times(self) -> int:
        """Number of samples per trajectory T."""
        return self.t.shape[0]

    def angle_mask(self) -> np.ndarray:
        """Boolean mask (n,) of the coordinates that are angles."""
        if self.angles is None:
            return np.zeros(self.n, dtype=bool)
        return np.asarray(self.angles, dtype=bool)


# ---------------------------------------------------------------------------- files


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _HDF5_SUFFIXES + _NPZ_SUFFIXES:
        raise DataError(
            f"File '{path}' has the unknown extension '{path.suffix}'; datasets are "
            "read from and written to .h5/.hdf5 (HDF5) or .npz (NumPy) files."
        )
    return suffix


def _attributes(dataset: Dataset) -> dict[str, Any]:
    """Metadata stored beside the arrays; JSON strings keep the two formats alike."""
    if isinstance(dataset, FieldDataset):
        return _field_data.attributes(dataset)
    attributes = {
        "format_version": FORMAT_VERSION,
        "params": json.dumps({k: float(v) for k, v in dataset.params.items()}),
    }
    if dataset.system is not None:
        attributes["system"] = dataset.system
    if dataset.angles is not None:
        attributes["angles"] = json.dumps(list(dataset.angles))
    return attributes


def _arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    if isinstance(dataset, FieldDataset):
        return _field_data.arrays(dataset)
    names = ("t",) + _STATE_FIELDS
    return {k: getattr(dataset, k) for k in names if getattr(dataset, k) is not None}


def _write_hdf5(dataset: Dataset, path: str) -> None:
    import h5py

    with h5py.File(path, "w") as file:
        for name, array in _arrays(dataset).items():
            file.create_dataset(name, data=array)
        for name, value in _attributes(dataset).items():
            file.attrs[name] = value


def _write_npz(dataset: Dataset, path: str) -> None:
    # Metadata as 0-d string/int arrays, so reading never needs pickle.
    metadata = {k: np.asarray(v) for k, v in _attributes(dataset).items()}
    with open(path, "wb") as file:
        np.savez(file, **_arrays(dataset), **metadata)


def _publish(temporary: str, path: Path, overwrite: bool) -> None:
    """Move the finished file into place in one step.

    Without `overwrite`, a hard link fails atomically if `path` exists, so a file
    that appears while we write is never clobbered; file systems without hard links
    fall back to check-then-rename.
    """
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise DataError(
            f"File '{path}' already exists and was left untouched; choose another "
            "path or pass overwrite=True to replace it."
        ) from None
    except OSError:
        if path.exists():
            raise DataError(
                f"File '{path}' already exists and was left untouched; choose another "
                "path or pass overwrite=True to replace it."
            ) from None
        os.replace(temporary, path)
    else:
        os.unlink(temporary)


def save(dataset: Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `dataset` to an HDF5 (.h5/.hdf5) or NumPy (.npz) file, atomically.

    The file is written under a temporary name in the same directory and renamed
    into place, so an interrupted write never leaves a half-written dataset. An
    existing file is refused (and kept byte-for-byte) unless `overwrite=True`.
    Missing parent directories are created.

    Returns:
        The path written.
    """
    path = Path(path)
    writer = _write_npz if _suffix(path) in _NPZ_SUFFIXES else _write_hdf5
    dataset.validate()
    if path.exists() and not overwrite:
        raise DataError(
            f"File '{path}' already exists and was left untouched; choose another "
            "path or pass overwrite=True to replace it."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        os.close(descriptor)
    except OSError as error:
        raise DataError(
            f"Cannot write file '{path}' ({error.strerror}); choose a writable "
            "directory."
        ) from None
    try:
        writer(dataset, temporary)
        _publish(temporary, path, overwrite)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _text(value) -> str:
    """HDF5 string attributes come back as str or bytes, npz ones as 0-d arrays."""
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_metadata(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    version = int(_text(raw.get("format_version", FORMAT_VERSION)))
    if version > FORMAT_VERSION:
        raise DataError(
            f"File '{path}' has dataset format version {version}, newer than the "
            f"version {FORMAT_VERSION} this lddnn reads; upgrade lddnn to read it."
        )
    try:
        params = json.loads(_text(raw["params"])) if "params" in raw else {}
        angles = json.loads(_text(raw["angles"])) if "angles" in raw else None
    except json.JSONDecodeError:
        raise DataError(
            f"File '{path}' has `params` or `angles` metadata that is not valid JSON; "
            "store params as a JSON object and angles as a JSON list of booleans."
        ) from None
    system = _text(raw["system"]) if "system" in raw else None
    return {"system": system, "params": params, "angles": angles}


def _read_hdf5(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import h5py

    try:
        with h5py.File(path, "r") as file:
            arrays = {}
            for name in _ARRAY_NAMES:
                if name in file:
                    if not isinstance(file[name], h5py.Dataset):
                        raise DataError(
                            f"File '{path}' has `{name}` as an HDF5 group, but it must "
                            "be an array dataset; store the samples directly."
                        )
                    arrays[name] = file[name][()]
            metadata = dict(file.attrs)
    except OSError as error:
        raise DataError(
            f"File '{path}' cannot be read as HDF5 ({error}); check that it is a "
            "complete .h5 file, or give it the extension that matches its format."
        ) from None
    return arrays, metadata


def _read_npz(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(
            f"File '{path}' cannot be read as a NumPy .npz archive ({error}); check "
            "that it is complete and was written by numpy.savez."
        ) from None
    arrays = {k: contents.pop(k) for k in _ARRAY_NAMES if k in contents}
    return arrays, contents


def load(path: str | os.PathLike) -> Dataset | FieldDataset:
    """Read and validate a dataset from an HDF5 (.h5/.hdf5) or NumPy (.npz) file.

    Required fields are `t` (T,) and `q` (B, T, n); `qd` and `qdd` (B, T, n) are
    optional. A file with `phi` (B, T, *grid) and a `lattice` attribute is a field
    dataset and comes back as a `FieldDataset`. Every problem (missing file or field, wrong shape, NaN or inf,
    non-increasing times, unreadable file) raises `DataError` naming the file.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise DataError(
            f"File '{path}' does not exist; check the path (relative paths are taken "
            f"from {Path.cwd()})."
        )
    reader = _read_npz if suffix in _NPZ_SUFFIXES else _read_hdf5
    arrays, raw_metadata = reader(path)
    if "phi" in arrays:
        return _field_data.from_file_contents(arrays, raw_metadata, path)
    for name in ("t", "q"):
        if name not in arrays:
            raise DataError(
                f"File '{path}' has no field `{name}`; a dataset needs `t` (T,) and "
                "`q` (B, T, n), and optionally `qd` and `qdd` (B, T, n)."
            )
    metadata = _parse_metadata(raw_metadata, path)
    # Bypass __init__ so that validation runs once, with the file named in messages.
    dataset = Dataset.__new__(Dataset)
    for field in dataclasses.fields(Dataset):
        value = arrays.get(field.name, metadata.get(field.name))
        setattr(dataset, field.name, value)
    dataset.validate(source=path)
    return dataset


# ---------------------------------------------------------------------- derivatives


def _time_derivative(values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """d/dt along axis 1: second-order central differences inside, second-order
    one-sided ones at the ends, exact for quadratics also on non-uniform `t`."""
    return np.gradient(values, t, axis=1, edge_order=2)


def _second_derivative_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stencil indices and weights (T, 4) of d²/dt², second order on any grid.

    Each sample uses four neighbours {i−1, …, i+2} (shifted inwards at the ends)
    and the weights that differentiate the interpolating cubic exactly. On a
    uniform grid the weight of the fourth point vanishes and this is the central
    difference (f₋ − 2f + f₊)/h²; three points would only be first order on a
    non-uniform grid. Differencing twice with `numpy.gradient` would be first order
    at the ends, where its one-sided errors differ from point to point.
    """
    count = t.shape[0]
    start = np.clip(np.arange(count) - 1, 0, count - 4)
    index = start[:, None] + np.arange(4)
    offsets = t[index] - t[:, None]
    scale = np.abs(offsets).max(axis=1, keepdims=True)
    powers = (offsets / scale)[:, None, :] ** np.arange(4)[None, :, None]
    # Taylor conditions Σ_j w_j (Δt_j)^k / k! = δ_k2 on scaled offsets (k = 0…3).
    factorials = np.array([1.0, 1.0, 2.0, 6.0])[None, :, None]
    rhs = np.broadcast_to(np.array([0.0, 0.0, 1.0, 0.0]), (count, 4))
    weights = np.linalg.solve(powers / factorials, rhs[..., None])[..., 0]
    return index, weights / scale**2


def _time_second_derivative(values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """d²/dt² along axis 1 with the stencils of `_second_derivative_weights`."""
    index, weights = _second_derivative_weights(t)
    return np.einsum("btjn,tj->btn", values[:, index], weights)


def _unwrapped(q: np.ndarray, angles: np.ndarray) -> np.ndarray:
    # An angle stored modulo 2π jumps by 2π; differencing across the jump would
    # produce a huge spurious velocity.
    if not angles.any():
        return q
    q = q.copy()
    q[..., angles] = np.unwrap(q[..., angles], axis=1)
    return q


def with_derivatives(dataset: Dataset) -> Dataset:
    """Fill missing velocities and accelerations by finite differences in time.

    Second-order differences, central inside and one-sided at both ends, on uniform
    or non-uniform `t`: q̇ by `numpy.gradient`, q̈ from q by a four-point stencil
    (the central (q₋ − 2q + q₊)/h² on a uniform grid), or from a measured q̇ by
    `numpy.gradient` again. Angles are unwrapped before differencing. Measured
    `qd` or `qdd` are kept as they are.
    """
    if dataset.qd is not None and dataset.qdd is not None:
        return dataset
    needed = 3 if dataset.qd is not None else 4
    if dataset.num_times < needed:
        raise DataError(
            f"Estimating derivatives needs at least {needed} samples per trajectory "
            f"but the dataset has {dataset.num_times}; record more samples or "
            "provide `qd` and `qdd`."
        )
    q = _unwrapped(dataset.q, dataset.angle_mask())
    qd = dataset.qd
    if qd is None:
        qd = _time_derivative(q, dataset.t)
    qdd = dataset.qdd
    if qdd is None and dataset.qd is None:
        qdd = _time_second_derivative(q, dataset.t)
    elif qdd is None:
        qdd = _time_derivative(qd, dataset.t)
    return dataclasses.replace(dataset, qd=qd, qdd=qdd)


def flatten_samples(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples as independent states: `(q, qd, qdd)`, each of shape (B·T, n)."""
    if dataset.qd is None or dataset.qdd is None:
        missing = "`qd` and `qdd`" if dataset.qd is None else "`qdd`"
        raise DataError(
            f"The dataset has no {missing}; call `lddnn.data.with_derivatives` to "
            "estimate them from the coordinates first."
        )
    n = dataset.n
    return (
        dataset.q.reshape(-1, n),
        dataset.qd.reshape(-1, n),
        dataset.qdd.reshape(-1, n),
    )


# --------------------------------------------------------------------------- splits


def _take(dataset: Dataset, trajectories=slice(None), times=slice(None)) -> Dataset:
    fields = {}
    for name in _STATE_FIELDS:
        value = getattr(dataset, name)
        fields[name] = None if value is None else value[trajectories][:, times]
    return dataclasses.replace(dataset, t=dataset.t[times], **fields)


def split(
    dataset: Dataset, validation_fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset | None]:
    """Split into training and validation datasets by whole trajectories.

    A random (seeded) `validation_fraction` of the B trajectories, at least one,
    is held out, and at least one is kept for training. With a single trajectory
    (B = 1) the split is by time instead: the last `validation_fraction` of the
    samples is held out as one contiguous stretch (so finite differences stay
    valid in both parts, and validation measures prediction of later times);
    `seed` is then unused. A fraction of 0 returns `(dataset, None)`.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(
            f"`validation_fraction` is {validation_fraction}, but it must lie in "
            "[0, 1): the share of the data held out for validation."
        )
    if validation_fraction == 0:
        return dataset, None
    if dataset.num_trajectories == 1:
        return _split_times(dataset, validation_fraction)
    count = dataset.num_trajectories
    held_out = min(max(1, round(validation_fraction * count)), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    validation, train = np.sort(order[:held_out]), np.sort(order[held_out:])
    return _take(dataset, trajectories=train), _take(dataset, trajectories=validation)


def _split_times(dataset: Dataset, validation_fraction: float):
    count = dataset.num_times
    held_out = min(max(1, round(validation_fraction * count)), count - 1)
    cut = count - held_out
    return (
        _take(dataset, times=slice(None, cut)),
        _take(dataset, times=slice(cut, None)),
    )
