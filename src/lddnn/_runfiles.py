"""The files of a training run: configuration, metrics, checkpoints and models.

Every file that a reader might see mid-write is written atomically (a temporary file
beside it, flushed to disk, then renamed over it), so an interrupted write leaves the
previous version intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.eqx"
MODEL_FILE = "model.eqx"
BEST_MODEL_FILE = "best_model.eqx"
CHECKPOINT_FORMAT = "lddnn-checkpoint-1"
TEMPORARY_PREFIX = ".tmp-"


class State(NamedTuple):
    """The arrays of a run; checkpoints store exactly these."""

    model: Any
    opt_state: Any
    key: jax.Array
    best_model: Any


@dataclasses.dataclass
class Meta:
    """The scalars of a run; checkpoints store them as JSON."""

    step: int = 0
    best_validation_loss: float | None = None
    validations_since_best: int = 0
    elapsed_seconds: float = 0.0
    stopped_early: bool = False


def atomic_write(path: pathlib.Path, write: Callable[[Any], None]) -> None:
    """Write to a temporary file beside `path`, flush it to disk, rename it over
    `path`: readers see the old file or the new one, never a partial one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json(path: pathlib.Path, value) -> None:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode()))


class RunFiles:
    """The files of a run directory: configuration, metrics, checkpoint, models."""

    def __init__(self, run_dir) -> None:
        self.root = pathlib.Path(run_dir)
        self.config = self.root / CONFIG_FILE
        self.metrics = self.root / METRICS_FILE
        self.checkpoint = self.root / CHECKPOINT_FILE

    def start(self, config: dict) -> None:
        """Create the directory for a new run; refuse one that already holds a run."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"The run directory {self.root} is a file, not a folder.")
        if any(p.exists() for p in (self.config, self.metrics, self.checkpoint)):
            raise ValueError(
                f"{self.root} already holds a training run; pass resume=True to "
                "continue it, or choose another run directory."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.config, config)
        self.metrics.write_text("")

    def stored_config(self) -> dict:
        """The configuration the run was started with."""
        if not self.config.exists():
            raise ValueError(
                f"There is no training run to resume in {self.root} (it has no "
                f"{CONFIG_FILE}); start one without resume=True."
            )
        return json.loads(self.config.read_text())

    def write_config(self, config: dict) -> None:
        write_json(self.config, config)

    def remove_temporaries(self) -> None:
        # Left behind only when a process died in the middle of a write.
        for stale in self.root.glob(TEMPORARY_PREFIX + "*"):
            stale.unlink()

    def append_metrics(self, record: dict) -> None:
        with self.metrics.open("a") as stream:
            stream.write(json.dumps(record) + "\n")

    def history_until(self, step: int) -> list[dict]:
        """The metric records up to `step`; later ones (written after the checkpoint
        by the interrupted process) are dropped, as the resumed run rewrites them."""
        if not self.metrics.exists():
            return []
        lines = self.metrics.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        kept = [record for record in records if record["step"] <= step]
        text = "".join(json.dumps(record) + "\n" for record in kept)
        atomic_write(self.metrics, lambda stream: stream.write(text.encode()))
        return kept

    def save_checkpoint(self, state: State, meta: Meta, fingerprint: str) -> None:
        header = {"format": CHECKPOINT_FORMAT, "data_fingerprint": fingerprint}
        header.update(dataclasses.asdict(meta))
        line = (json.dumps(header) + "\n").encode()

        def write(stream):
            stream.write(line)
            eqx.tree_serialise_leaves(stream, state)

        atomic_write(self.checkpoint, write)

    def save_models(self, state: State, hyperparams, precision: str) -> None:
        self._save_model(self.root / MODEL_FILE, state.model, hyperparams, precision)
        if state.best_model is not None:
            path = self.root / BEST_MODEL_FILE
            self._save_model(path, state.best_model, hyperparams, precision)

    @staticmethod
    def _save_model(path, model, hyperparams, precision: str) -> None:
        if hyperparams is None:
            atomic_write(path, lambda stream: eqx.tree_serialise_leaves(stream, model))
            return
        from lddnn import nn  # only needed to store a model that can be rebuilt

        if hyperparams.get("kind") == "density":
            # A density trained on a lattice is stored alone; the lattice belongs to
            # the run, and the density can be put on any other.
            model = getattr(model, "density", model)
        nn.save_model(path, model, {**hyperparams, "dtype": precision})


def load_checkpoint(path, like) -> tuple[Any, dict]:
    """Read a checkpoint file: its arrays, shaped like `like`, and its JSON header.

    `like` is a pytree of the stored structure, (model, optimizer state, key data,
    best model or None), e.g. the initial state of the same run.
    """
    path = pathlib.Path(path)
    with path.open("rb") as stream:
        header = _header(stream.readline(), path)
        arrays = eqx.tree_deserialise_leaves(stream, like)
    _check_like(arrays, like, path)
    return arrays, header


def _header(line: bytes, path) -> dict:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an lddnn training checkpoint.")
    return header


def _check_like(loaded, like, path) -> None:
    pairs = zip(jax.tree.leaves(loaded), jax.tree.leaves(like))
    for got, expected in pairs:
        if eqx.is_array(expected) and jnp.shape(got) != jnp.shape(expected):
            raise ValueError(
                f"The checkpoint {path} holds an array of shape {jnp.shape(got)} where "
                f"the model has {jnp.shape(expected)}; it belongs to another model."
            )


def restore(files: RunFiles, initial: State, fingerprint: str):
    """The state and scalars stored in the run's checkpoint, or None without one."""
    if not files.checkpoint.exists():
        return None
    arrays, header = load_checkpoint(files.checkpoint, initial)
    if header["data_fingerprint"] != fingerprint:
        raise ValueError(
            f"The samples differ from those the run in {files.root} was trained on; "
            "resume with the same training (and validation) samples."
        )
    fields = {f.name for f in dataclasses.fields(Meta)}
    meta = Meta(**{k: v for k, v in header.items() if k in fields})
    return State(*arrays), meta
