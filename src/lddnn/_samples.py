"""Training samples: states with observed accelerations, checked at the boundary.

A sample is one state (q, q̇) with its observed acceleration q̈, and optionally its
time and the system's parameters. Trajectory datasets become samples by flattening
their (trajectory, time) axes.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Samples(NamedTuple):
    """Independent training samples: states and their observed accelerations.

    `q`, `qd` and `qdd` have shape (N, n). `t` is None (time 0 for all), a scalar, or
    shape (N,). `params` is None or a pytree (e.g. a dict of name -> value) whose
    scalar leaves are shared by all samples and whose other leaves are per sample,
    with leading axis N.
    """

    q: Any
    qd: Any
    qdd: Any
    t: Any = None
    params: Any = None


def is_dataset(value) -> bool:
    return all(hasattr(value, name) for name in ("q", "qd", "qdd", "t", "angles"))


def samples_from_dataset(dataset) -> Samples:
    """All states of a `lddnn.data.Dataset` (B trajectories × T times) as samples.

    Each sample keeps its time; the dataset's parameters are shared by all samples.
    """
    if dataset.qd is None or dataset.qdd is None:
        raise ValueError(
            "The dataset has no velocities or accelerations; estimate them with "
            "`lddnn.data.with_derivatives` before training."
        )
    q = np.asarray(dataset.q)
    count, times, n = q.shape
    t = np.broadcast_to(np.asarray(dataset.t)[None, :], (count, times)).reshape(-1)
    params = {k: np.asarray(v) for k, v in dataset.params.items()} or None
    flat = [np.asarray(x).reshape(-1, n) for x in (q, dataset.qd, dataset.qdd)]
    return Samples(*flat, t, params)


def _as_real(value, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"The samples' `{name}` has dtype {array.dtype}; it must be real numbers."
        )
    return array


def _check_shapes(samples: Samples, name: str) -> None:
    q, qd, qdd = samples.q, samples.qd, samples.qdd
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(
            f"`{name}.q` has shape {q.shape}, but it must be (N, n) with N ≥ 1 samples "
            "of n coordinates (flatten trajectories first)."
        )
    for field, array in (("qd", qd), ("qdd", qdd)):
        if array.shape != q.shape:
            raise ValueError(
                f"`{name}.{field}` has shape {array.shape} but `{name}.q` has shape "
                f"{q.shape}; velocities and accelerations must match the coordinates."
            )
    if samples.t is not None and samples.t.shape not in ((), (q.shape[0],)):
        raise ValueError(
            f"`{name}.t` has shape {samples.t.shape}, but it must be a scalar or have "
            f"shape ({q.shape[0]},), one time per sample."
        )


def _check_params(params, count: int, name: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if np.ndim(leaf) != 0 and np.shape(leaf)[0] != count:
            raise ValueError(
                f"`{name}.params{jax.tree_util.keystr(path)}` has shape "
                f"{np.shape(leaf)}; a parameter must be a scalar shared by all samples "
                f"or have leading axis {count}, one value per sample."
            )


def _check_finite(samples: Samples, name: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(samples._asdict()):
        if not np.all(np.isfinite(leaf)):
            raise ValueError(
                f"`{name}{jax.tree_util.keystr(path)}` contains NaN or inf; remove or "
                "repair those samples before training."
            )


def as_samples(value, name: str) -> Samples:
    """Validate samples at the boundary and return them as NumPy arrays."""
    if is_dataset(value):
        value = samples_from_dataset(value)
    if not isinstance(value, tuple) or not 3 <= len(value) <= 5:
        raise ValueError(
            f"`{name}` must be a Samples tuple (q, qd, qdd[, t[, params]]) or a "
            f"lddnn.data.Dataset, not {type(value).__name__}."
        )
    value = Samples(*value)
    arrays = [_as_real(x, field) for x, field in zip(value[:3], ("q", "qd", "qdd"))]
    t = None if value.t is None else _as_real(value.t, "t")
    params = jax.tree.map(lambda x: _as_real(x, "params"), value.params)
    samples = Samples(*arrays, t, params)
    _check_shapes(samples, name)
    _check_params(params, samples.q.shape[0], name)
    _check_finite(samples, name)
    return samples


def take(samples: Samples, index) -> Samples:
    """The samples at `index`; shared (scalar) leaves are kept as they are."""
    return jax.tree.map(lambda x: x if jnp.ndim(x) == 0 else x[index], samples)


def split_samples(samples: Samples, fraction: float, seed: int):
    count = samples.q.shape[0]
    if count < 2:
        raise ValueError(
            "A validation split needs at least two samples; pass more samples or "
            "set `validation_fraction` to 0."
        )
    held_out = min(max(1, round(fraction * count)), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    training, validation = np.sort(order[held_out:]), np.sort(order[:held_out])
    return take(samples, training), take(samples, validation)


def training_and_validation(samples, validation, fraction: float, seed: int):
    """Checked training and validation samples; with no validation samples passed,
    a `fraction` is held out (by whole trajectories for a dataset)."""
    if validation is not None and fraction > 0:
        raise ValueError(
            f"Validation samples were passed and `validation_fraction` is {fraction}; "
            "use one or the other."
        )
    if validation is None and fraction > 0 and is_dataset(samples):
        from lddnn import data  # split by whole trajectories, not by states

        samples, validation = data.split(samples, fraction, seed)
    training = as_samples(samples, "samples")
    if validation is not None:
        return training, as_samples(validation, "validation")
    if fraction > 0:
        return split_samples(training, fraction, seed)
    return training, None


def cast_samples(samples: Samples, dtype) -> Samples:
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=dtype), samples)


def fingerprint(*sample_sets) -> str:
    """A digest of the samples, so that a resumed run can refuse different data."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(sample_sets):
        array = np.asarray(leaf)
        digest.update(repr((array.shape, str(array.dtype))).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
