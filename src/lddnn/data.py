"""Trajectory datasets of mechanical systems: the container, files, derivatives, splits.

A dataset holds B trajectories sampled at T common times: `t` (T,), coordinates `q`
(B, T, n) and optionally velocities `qd` and accelerations `qdd` (B, T, n), with the
system's name, its parameters and which coordinates are angles. On disk it is one HDF5
file (datasets `t`, `q`, `qd`, `qdd`; attributes `system`, `params` as JSON, `angles`
as JSON, `format_version`); `.npz` archives with the same names are read and written too.
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

__all__ = [
    "DataError",
    "Dataset",
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


@dataclasses.dataclass
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
