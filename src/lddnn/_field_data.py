"""Field datasets: B runs of a field on a lattice, sampled at T common times.

On disk (HDF5 or .npz, like mechanical datasets): `t` (T,), `phi` (B, T, *grid) or
(B, T, *grid, c), optionally `phid` and `phidd` of the same shape; attributes
`system`, `params` (JSON), `lattice` (JSON, `Lattice.describe()`) and
`format_version`. A complex `phi` (a Schrödinger field) is stored as it is.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from lddnn.lattice import Lattice, from_description

FIELD_NAMES = ("phi", "phid", "phidd")


def _where(source) -> str:
    return "in the dataset" if source is None else f"in file '{source}'"


def _error(message: str):
    from lddnn.data import DataError

    return DataError(message)


def _as_field(value, name: str, source) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        return array.astype(np.float64)
    if array.dtype.kind not in "fc":
        raise _error(
            f"Field `{name}` {_where(source)} has dtype {array.dtype}, but a field "
            "must hold real or complex numbers; convert it with `.astype(float)`."
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise _error(
            f"Field `{name}` {_where(source)} contains {bad} NaN or infinite values "
            f"out of {array.size}; remove or repair those samples before use."
        )
    return array


@dataclasses.dataclass(eq=False)
class FieldDataset:
    """B runs of a field on `lattice`, sampled at T common times.

    Attributes:
        t: times, shape (T,), strictly increasing.
        phi: the field, shape (B, T, *lattice.shape) or (B, T, *lattice.shape, c).
        phid, phidd: its first and second time derivatives (same shape), or None.
        lattice: the `Lattice` the field lives on.
        system: the name of the field system, or None.
        params: the system's parameters.
    """

    t: np.ndarray
    phi: np.ndarray
    lattice: Lattice
    phid: np.ndarray | None = None
    phidd: np.ndarray | None = None
    system: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source=None) -> None:
        """Check shapes, finiteness and increasing times; `source` names the file."""
        from lddnn.data import _check_times

        self.t = _as_field(self.t, "t", source).real
        _check_times(self.t, source)
        self.phi = _as_field(self.phi, "phi", source)
        expected = (None, self.t.shape[0]) + self.lattice.shape
        shape = self.phi.shape
        if (
            len(shape) not in (len(expected), len(expected) + 1)
            or shape[1 : len(expected)] != expected[1:]
        ):
            raise _error(
                f"Field `phi` {_where(source)} has shape {shape}, but with "
                f"{self.t.shape[0]} times on a lattice of shape {self.lattice.shape} "
                f"it must be (B, {self.t.shape[0]}, "
                f"{', '.join(map(str, self.lattice.shape))}[, c])."
            )
        for name in ("phid", "phidd"):
            value = getattr(self, name)
            if value is None:
                continue
            value = _as_field(value, name, source)
            if value.shape != shape:
                raise _error(
                    f"Field `{name}` {_where(source)} has shape {value.shape} but "
                    f"`phi` has shape {shape}; derivatives must match the field."
                )
            setattr(self, name, value)
        self.params = dict(self.params or {})

    @property
    def components(self) -> int | None:
        """Components per site, or None for a scalar field."""
        extra = self.phi.ndim - 2 - self.lattice.ndim
        return self.phi.shape[-1] if extra else None

    @property
    def num_runs(self) -> int:
        return self.phi.shape[0]


def attributes(dataset: FieldDataset) -> dict[str, Any]:
    from lddnn.data import FORMAT_VERSION

    values = {
        "format_version": FORMAT_VERSION,
        "params": json.dumps(
            {k: v if isinstance(v, str) else float(v) for k, v in dataset.params.items()}
        ),
        "lattice": json.dumps(dataset.lattice.describe()),
    }
    if dataset.system is not None:
        values["system"] = dataset.system
    return values


def arrays(dataset: FieldDataset) -> dict[str, np.ndarray]:
    names = ("t",) + FIELD_NAMES
    return {k: getattr(dataset, k) for k in names if getattr(dataset, k) is not None}


def from_file_contents(arrays_: dict, metadata: dict, path: Path) -> FieldDataset:
    """Build a field dataset from arrays and raw attributes read from `path`."""
    from lddnn.data import _parse_metadata, _text

    if "t" not in arrays_:
        raise _error(
            f"File '{path}' has no field `t`; a field dataset needs `t` (T,) and "
            "`phi` (B, T, *grid)."
        )
    if "lattice" not in metadata:
        raise _error(
            f"File '{path}' holds `phi` but no `lattice` attribute; a field dataset "
            "must describe its lattice (write it with lddnn, or add the JSON of "
            "`Lattice.describe()` as the attribute `lattice`)."
        )
    try:
        lattice = from_description(json.loads(_text(metadata["lattice"])))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise _error(
            f"File '{path}' has a `lattice` attribute that does not describe a "
            f"lattice ({error}); store the JSON of `Lattice.describe()`."
        ) from None
    parsed = _parse_metadata(metadata, path)
    dataset = FieldDataset.__new__(FieldDataset)
    dataset.lattice, dataset.system, dataset.params = (
        lattice,
        parsed["system"],
        parsed["params"],
    )
    for name in ("t",) + FIELD_NAMES:
        setattr(dataset, name, arrays_.get(name))
    dataset.validate(source=path)
    return dataset


def samples(dataset: FieldDataset):
    """Every (run, time) of a dataset with derivatives as training samples, the
    field flattened per sample: `Samples(q, qd, qdd, t)` with q of shape (B·T, N·c)."""
    from lddnn._samples import Samples

    if dataset.phid is None or dataset.phidd is None:
        raise _error(
            "The field dataset has no `phid` or `phidd`; training needs the field's "
            "velocities and accelerations (simulate with lddnn, or store them)."
        )
    count = dataset.phi.shape[0] * dataset.phi.shape[1]
    flat = [np.asarray(x).reshape(count, -1) for x in (dataset.phi, dataset.phid,
                                                         dataset.phidd)]
    t = np.broadcast_to(dataset.t[None, :], dataset.phi.shape[:2]).reshape(-1)
    return Samples(*flat, t, None)


__all__ = ["FieldDataset", "samples"]
