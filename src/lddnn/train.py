"""Fitting a learnable Lagrangian to observed accelerations.

A model `model(q, qd, t, params) -> scalar` predicts accelerations through its own
Euler–Lagrange equations, q̈_θ = M_θ⁻¹(∇_q L_θ − C_θ q̇ − ∂_t ∇_q̇ L_θ), and is trained
to make them match the observed q̈. The default objective is the per-sample Euclidean
distance ‖q̈_θ − q̈_obs‖₂ averaged over a batch; the mean squared error and the mean
absolute error are the usual variants.

`train` runs the optimisation (optax, Adam by default) with one compiled step
function, and, given a run directory, writes the resolved configuration, metrics as
JSON lines, atomic checkpoints from which an interrupted run resumes bit for bit, and
the final (and best) model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lddnn import _runfiles
from lddnn._runfiles import Meta, RunFiles, State, load_checkpoint
from lddnn._samples import (
    Samples,
    cast_samples,
    fingerprint,
    samples_from_dataset,
    take,
    training_and_validation,
)
from lddnn.mechanics import SingularMassMatrixError, accelerations

__all__ = [
    "NonFiniteLossError",
    "Samples",
    "TrainConfig",
    "TrainResult",
    "acceleration_loss",
    "acceleration_scale",
    "learning_rate_schedule",
    "load_checkpoint",
    "make_optimizer",
    "predicted_accelerations",
    "samples_from_dataset",
    "train",
]

SCHEDULES = ("constant", "exponential", "cosine")
LOSSES = ("norm", "mse", "l1")
PRECISIONS = ("float32", "float64")
# Validation runs in chunks so that a large held-out set never has to fit through
# the Euler–Lagrange solve in one piece: at most 4096 samples, and fewer when each
# sample is large (a field of many sites), so that a chunk holds about as many
# coordinates as 4096 samples of a 32-coordinate system.
_VALIDATION_CHUNK = 4096
_VALIDATION_COORDINATES = 4096 * 32


# ----------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; JSON-serialisable.

    Attributes:
        steps: number of optimisation steps.
        batch_size: samples per step, drawn uniformly (with replacement) each step.
        learning_rate: Adam's initial (peak, with warm-up) learning rate.
        schedule: "constant"; "exponential", lr · decay_factor^(step / decay_steps);
            or "cosine", from lr down to lr · decay_factor over decay_steps.
        decay_steps: horizon of the decay; None means the steps after warm-up. It is
            fixed when a run starts, so extending a run keeps its schedule.
        decay_factor: learning rate at the end of the decay, as a fraction of
            `learning_rate`.
        warmup_steps: linear warm-up from 0 to `learning_rate` before the schedule.
        loss: "norm" (mean over the batch of ‖q̈_θ − q̈‖₂), "mse" (mean of the
            squared components) or "l1" (mean of the absolute components).
        scale_accelerations: divide each coordinate's acceleration error by the root
            mean square of that coordinate's observed accelerations in the training
            samples (1 where they are all zero), so that coordinates with small
            accelerations count as much as those with large ones.
        seed: seeds the batch draws and the validation split.
        precision: "float32" or "float64"; samples and model parameters are cast to
            it. float64 needs `jax.config.update("jax_enable_x64", True)` first.
        validation_fraction: share of the samples held out for validation when no
            validation samples are passed.
        validate_every: steps between validations (and at the last step).
        early_stopping: stop after this many validations without improvement; None
            never stops early.
        checkpoint_every: steps between checkpoints (one is also written at the end
            and on KeyboardInterrupt).
        log_every: steps between metric records.
        clip_norm: clip the gradient to this global norm; None does not clip.
        weight_decay: decoupled weight decay (AdamW) when positive.
    """

    steps: int = 10_000
    batch_size: int = 32
    learning_rate: float = 1e-3
    schedule: str = "constant"
    decay_steps: int | None = None
    decay_factor: float = 0.1
    warmup_steps: int = 0
    loss: str = "norm"
    scale_accelerations: bool = False
    seed: int = 0
    precision: str = "float32"
    validation_fraction: float = 0.0
    validate_every: int = 100
    early_stopping: int | None = None
    checkpoint_every: int = 1000
    log_every: int = 10
    clip_norm: float | None = None
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_counts(self)
        _check_names(self)
        _check_rates(self)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a configuration from `to_dict`'s output; unknown keys are refused."""
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"Unknown training options {unknown}; the known ones are {known}."
            )
        return cls(**values)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_counts(config: TrainConfig) -> None:
    least = {"steps": 1, "batch_size": 1, "validate_every": 1, "checkpoint_every": 1}
    least |= {"log_every": 1, "warmup_steps": 0, "decay_steps": 1, "early_stopping": 1}
    for name, smallest in least.items():
        value = getattr(config, name)
        if value is None and name in ("decay_steps", "early_stopping"):
            continue
        if not _is_int(value) or value < smallest:
            raise ValueError(
                f"`{name}` is {value!r}, but it must be an integer of at least "
                f"{smallest}."
            )
    if not _is_int(config.seed):
        raise ValueError(f"`seed` is {config.seed!r}, but it must be an integer.")


def _check_names(config: TrainConfig) -> None:
    for name, choices in (
        ("schedule", SCHEDULES),
        ("loss", LOSSES),
        ("precision", PRECISIONS),
    ):
        value = getattr(config, name)
        if value not in choices:
            raise ValueError(
                f"Unknown {name} {value!r}; choose one of {', '.join(choices)}."
            )


def _check_rates(config: TrainConfig) -> None:
    if not config.learning_rate > 0:
        raise ValueError(
            f"`learning_rate` is {config.learning_rate!r}, but it must be positive."
        )
    if not 0 < config.decay_factor <= 1:
        raise ValueError(
            f"`decay_factor` is {config.decay_factor!r}, but it must lie in (0, 1]: "
            "the final learning rate as a fraction of the initial one."
        )
    if not 0 <= config.validation_fraction < 1:
        raise ValueError(
            f"`validation_fraction` is {config.validation_fraction!r}, but it must "
            "lie in [0, 1): the share of the samples held out for validation."
        )
    if config.clip_norm is not None and not config.clip_norm > 0:
        raise ValueError(f"`clip_norm` is {config.clip_norm!r}; use a positive number.")
    if not config.weight_decay >= 0:
        raise ValueError(f"`weight_decay` is {config.weight_decay!r}; use 0 or more.")


def _resolved(config: TrainConfig, stored: dict | None = None) -> TrainConfig:
    """Fill the options left to the run (the decay horizon); a resumed run inherits
    them from the stored configuration so that its schedule does not change."""
    if config.decay_steps is not None:
        return config
    if stored is not None and stored.get("decay_steps") is not None:
        return dataclasses.replace(config, decay_steps=stored["decay_steps"])
    horizon = max(config.steps - config.warmup_steps, 1)
    return dataclasses.replace(config, decay_steps=horizon)


# ------------------------------------------------------------------------------- loss


def predicted_accelerations(model, samples: Samples) -> jax.Array:
    """The model's Euler–Lagrange accelerations at every sample, shape (N, n).

    The mass-matrix checks are off: inside a training step a singular M cannot be
    reported sample by sample, and `train` checks the model once before it starts.
    """
    t = jnp.zeros((), samples.q.dtype) if samples.t is None else samples.t
    batch = samples._replace(t=t)
    axes = jax.tree.map(lambda x: None if jnp.ndim(x) == 0 else 0, batch)

    def one(sample):
        return accelerations(
            model, sample.q, sample.qd, sample.t, sample.params, check=False
        )

    return jax.vmap(one, in_axes=(axes,))(batch)


def _per_sample_norm(error: jax.Array) -> jax.Array:
    # d√x/dx is infinite at 0, so a single exactly predicted sample would make the
    # whole gradient NaN; the inner `where` keeps the unused branch differentiable.
    # Only an exact zero is special-cased, so a NaN error still gives a NaN loss.
    squared = jnp.sum(error**2, axis=-1)
    zero = squared == 0
    return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, squared)))


_LOSSES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "norm": lambda error: jnp.mean(_per_sample_norm(error)),
    "mse": lambda error: jnp.mean(error**2),
    "l1": lambda error: jnp.mean(jnp.abs(error)),
}


def acceleration_loss(model, samples: Samples, *, loss: str = "norm", scale=None):
    """Distance between predicted and observed accelerations over a batch.

    With e_i = (q̈_θ,i − q̈_i) / scale: "norm" is mean_i ‖e_i‖₂, "mse" is the mean
    of all e_ik², "l1" the mean of all |e_ik|. `scale` (shape (n,)) defaults to 1.
    """
    if loss not in _LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; choose one of {', '.join(LOSSES)}.")
    error = predicted_accelerations(model, samples) - samples.qdd
    if scale is not None:
        error = error / scale
    return _LOSSES[loss](error)


def acceleration_scale(qdd) -> jax.Array:
    """Root mean square of each coordinate's acceleration over the samples, (n,).

    A coordinate whose accelerations are all zero gets 1, so dividing by the scale
    never divides by zero.
    """
    rms = jnp.sqrt(jnp.mean(jnp.asarray(qdd) ** 2, axis=0))
    return jnp.where(rms > 0, rms, jnp.ones_like(rms))


# -------------------------------------------------------------------------- optimiser


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning rate as a function of the step count (warm-up, then decay)."""
    config = _resolved(config)
    rate = config.learning_rate
    if config.schedule == "exponential":
        main = optax.exponential_decay(rate, config.decay_steps, config.decay_factor)
    elif config.schedule == "cosine":
        main = optax.cosine_decay_schedule(
            rate, config.decay_steps, config.decay_factor
        )
    else:
        main = optax.constant_schedule(rate)
    if config.warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, rate, config.warmup_steps)
    return optax.join_schedules([warmup, main], [config.warmup_steps])


_OPTIMIZER_OPTIONS = (
    "learning_rate",
    "schedule",
    "decay_steps",
    "decay_factor",
    "warmup_steps",
    "clip_norm",
    "weight_decay",
)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam (AdamW with weight decay) on the schedule, after optional clipping."""
    config = _resolved(config)
    return _optimizer(tuple(getattr(config, name) for name in _OPTIMIZER_OPTIONS))


@functools.lru_cache(maxsize=32)
def _optimizer(options: tuple) -> optax.GradientTransformation:
    # Cached so that equal options give the identical optimizer object: it is a
    # static argument of the compiled step, which later runs can then reuse.
    config = TrainConfig(**dict(zip(_OPTIMIZER_OPTIONS, options)))
    schedule = learning_rate_schedule(config)
    if config.weight_decay > 0:
        optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
    else:
        optimizer = optax.adam(schedule)
    if config.clip_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), optimizer)


@eqx.filter_jit
def _train_step(model, opt_state, key_data, samples, scale, optimizer, loss, batch):
    """One optimisation step: draw `batch` samples, differentiate the loss, update.

    The random key travels in and out as raw key data, so the state is plain arrays
    that a checkpoint stores exactly.
    """
    key, batch_key = jax.random.split(jax.random.wrap_key_data(key_data))
    index = jax.random.randint(batch_key, (batch,), 0, samples.q.shape[0])
    value, grads = eqx.filter_value_and_grad(acceleration_loss)(
        model, take(samples, index), loss=loss, scale=scale
    )
    trainable = eqx.filter(model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    model = eqx.apply_updates(model, updates)
    return model, opt_state, jax.random.key_data(key), value


_compiled_loss = eqx.filter_jit(acceleration_loss)


def _mean_loss(model, samples: Samples, loss: str, scale) -> float:
    """The loss over all `samples`, evaluated in chunks (every loss is a mean over
    samples, so chunk means weighted by chunk sizes give it exactly)."""
    count, n = samples.q.shape
    chunk = max(1, min(_VALIDATION_CHUNK, _VALIDATION_COORDINATES // n))
    total = 0.0
    for start in range(0, count, chunk):
        part = take(samples, slice(start, start + chunk))
        value = _compiled_loss(model, part, loss=loss, scale=scale)
        total += float(value) * part.q.shape[0]
    return total / count


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def _diverged(step: int, loss: float, config: TrainConfig) -> NonFiniteLossError:
    advice = "lower the learning rate (or add `clip_norm`)"
    if config.precision == "float32":
        advice += ", or train in float64"
    return NonFiniteLossError(
        f"The training loss became {loss} at step {step}; the optimisation diverged "
        f"or the model's mass matrix became singular. Try again: {advice}."
    )


# -------------------------------------------------------------------------------- loop


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the model after the last step.
        best_model: the model with the lowest validation loss (the final model when
            there was no validation).
        history: the metric records (also the lines of metrics.jsonl), from step 1
            of the run even when it was resumed.
        steps: the number of steps completed.
        best_validation_loss: the lowest validation loss, or None.
        stopped_early: whether early stopping ended the run.
        acceleration_scale: the per-coordinate divisor of the errors, or None.
    """

    model: Any
    best_model: Any
    history: list[dict]
    steps: int
    best_validation_loss: float | None
    stopped_early: bool
    acceleration_scale: Any


class _Loop:
    """The step loop of one `train` call, with validation, metrics and checkpoints."""

    def __init__(self, config: TrainConfig, training, validation, scale):
        self.config, self.training, self.validation = config, training, validation
        self.optimizer, self.scale = make_optimizer(config), scale
        self.schedule = learning_rate_schedule(config)
        self.files: RunFiles | None = None
        self.progress: Callable[[int, dict], None] | None = None
        self.fingerprint = ""
        self.history: list[dict] = []

    def run(self, state: State, meta: Meta) -> tuple[State, Meta]:
        self.state, self.meta = state, meta
        self.saved = (state, dataclasses.replace(meta))
        self.started, self.elapsed_before = time.perf_counter(), meta.elapsed_seconds
        self.last_log = (meta.step, self.started)
        self.losses: list[float] = []
        try:
            while self.meta.step < self.config.steps and not self.meta.stopped_early:
                self._advance()
        except KeyboardInterrupt:
            # Keep the work done so far: the last fully processed step is resumable.
            self._checkpoint(*self.saved)
            raise
        self._checkpoint(self.state, self.meta)
        return self.state, self.meta

    def _advance(self) -> None:
        model, opt_state, key, loss = _train_step(
            *self.state[:3],
            self.training,
            self.scale,
            self.optimizer,
            self.config.loss,
            self.config.batch_size,
        )
        step, loss = self.meta.step + 1, float(loss)
        if not math.isfinite(loss):
            raise _diverged(step, loss, self.config)
        self.state = self.state._replace(model=model, opt_state=opt_state, key=key)
        self.meta.step = step
        self.losses.append(loss)
        validation_loss = self._validate(step)
        if self._log_due(step, validation_loss):
            self._log(step, validation_loss)
        if step % self.config.checkpoint_every == 0:
            self._checkpoint(self.state, self.meta)
        self.saved = (self.state, dataclasses.replace(self.meta))

    def _validate(self, step: int) -> float | None:
        config = self.config
        if self.validation is None:
            return None
        if step % config.validate_every != 0 and step != config.steps:
            return None
        loss = _mean_loss(self.state.model, self.validation, config.loss, self.scale)
        meta = self.meta
        if meta.best_validation_loss is None or loss < meta.best_validation_loss:
            meta.best_validation_loss, meta.validations_since_best = loss, 0
            self.state = self.state._replace(best_model=self.state.model)
        else:
            meta.validations_since_best += 1
            patience = config.early_stopping
            meta.stopped_early = patience is not None and (
                meta.validations_since_best >= patience
            )
        return loss

    def _log_due(self, step: int, validation_loss) -> bool:
        last = step >= self.config.steps or self.meta.stopped_early
        return last or validation_loss is not None or step % self.config.log_every == 0

    def _log(self, step: int, validation_loss: float | None) -> None:
        now = time.perf_counter()
        last_step, last_time = self.last_log
        record = {
            "step": step,
            "loss": float(np.mean(self.losses)),
            "learning_rate": float(self.schedule(step - 1)),
            "elapsed_seconds": self._elapsed(now),
            "steps_per_second": (step - last_step) / max(now - last_time, 1e-9),
        }
        if validation_loss is not None:
            record["validation_loss"] = validation_loss
        self.losses, self.last_log = [], (step, now)
        self.history.append(record)
        if self.files is not None:
            self.files.append_metrics(record)
        if self.progress is not None:
            self.progress(step, dict(record))

    def _elapsed(self, now: float) -> float:
        return self.elapsed_before + (now - self.started)

    def _checkpoint(self, state: State, meta: Meta) -> None:
        if self.files is None:
            return
        elapsed = self._elapsed(time.perf_counter())
        meta = dataclasses.replace(meta, elapsed_seconds=elapsed)
        self.files.save_checkpoint(state, meta, self.fingerprint)


def _require_precision(precision: str):
    if precision == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "precision='float64' needs 64-bit JAX, which is off; call "
            "`jax.config.update('jax_enable_x64', True)` before creating arrays (the "
            "`lddnn` command line does this for --precision float64)."
        )
    return jnp.dtype(precision)


def _check_model(model, samples: Samples) -> None:
    """Evaluate the model once, eagerly, so that a model that cannot be trained
    (a non-scalar output, a singular mass matrix as with ReLU) is refused now."""
    first = take(samples, 0)
    t = jnp.zeros((), first.q.dtype) if first.t is None else first.t
    value = model(first.q, first.qd, t, first.params)
    if jnp.shape(value) != ():
        raise ValueError(
            f"The model returned shape {jnp.shape(value)}; a Lagrangian must return "
            "a scalar for one state (q, qd of shape (n,))."
        )
    try:
        accelerations(model, first.q, first.qd, t, first.params)
    except SingularMassMatrixError as error:
        raise SingularMassMatrixError(
            f"The model cannot be trained: at the first training sample {error}"
        ) from None
    except eqx.EquinoxRuntimeError as error:
        # Models with their own solve (a density on a lattice) report a singular
        # or indefinite velocity Hessian from inside compiled code.
        raise SingularMassMatrixError(
            "The model cannot be trained: at the first training sample its own "
            "Euler–Lagrange solve failed (the velocity Hessian is singular or "
            "indefinite, or the state is not finite); see the error above."
        ) from error


def _cast(tree, dtype):
    """Every floating-point array leaf of `tree` cast to `dtype`."""

    def cast(leaf):
        if eqx.is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def _prepare(model, samples, validation, config: TrainConfig):
    """Validate and cast everything a run needs before anything touches the disk."""
    dtype = _require_precision(config.precision)
    training, validation = training_and_validation(
        samples, validation, config.validation_fraction, config.seed
    )
    if config.batch_size > training.q.shape[0]:
        raise ValueError(
            f"`batch_size` is {config.batch_size} but there are only "
            f"{training.q.shape[0]} training samples; lower it or add data."
        )
    training = cast_samples(training, dtype)
    if validation is not None:
        validation = cast_samples(validation, dtype)
    model = _cast(model, dtype)
    _check_model(model, training)
    return model, training, validation


def _resumed_config(config: TrainConfig, files: RunFiles) -> TrainConfig:
    """The configuration to continue with; only `steps` may differ."""
    stored = files.stored_config()
    config = _resolved(config, stored)
    given = config.to_dict()
    differences = [
        f"{name} (stored {stored.get(name)!r}, given {given.get(name)!r})"
        for name in sorted((set(given) | set(stored)) - {"steps"})
        if given.get(name) != stored.get(name)
    ]
    if differences:
        raise ValueError(
            f"Cannot resume the run in {files.root}: its configuration differs in "
            f"{'; '.join(differences)}. Only `steps` may change when resuming."
        )
    return config


def train(
    model,
    samples,
    config: TrainConfig | None = None,
    run_dir=None,
    *,
    resume: bool = False,
    progress: Callable[[int, dict], None] | None = None,
    validation=None,
    hyperparams: dict | None = None,
) -> TrainResult:
    """Fit `model` to observed accelerations by minimising the acceleration loss.

    Arguments:
        model: an Equinox module `model(q, qd, t, params) -> scalar` (a Lagrangian).
        samples: `Samples(q, qd, qdd[, t, params])` or a plain tuple of them, or a
            `lddnn.data.Dataset` (its states become samples; a validation split is
            then made by whole trajectories).
        config: the `TrainConfig`; defaults to `TrainConfig()`.
        run_dir: a directory for config.json, metrics.jsonl, checkpoint.eqx and the
            final model.eqx (and best_model.eqx with validation); None keeps
            everything in memory.
        resume: continue the run in `run_dir` from its checkpoint. The result equals
            that of an uninterrupted run; the configuration may differ only in
            `steps` (to extend a run).
        progress: called as `progress(step, metrics)` at every metric record.
        validation: held-out samples, instead of `config.validation_fraction`.
        hyperparams: the model's constructor arguments for `lddnn.nn.save_model`,
            so that the saved model can be rebuilt; without them only the weights
            are saved.

    Returns:
        A `TrainResult` with the final and best models and the metric history.

    Raises:
        ValueError: bad samples or configuration, or a resume that does not match.
        NonFiniteLossError: the loss became NaN or inf (the message names the step).
    """
    config = config if config is not None else TrainConfig()
    if resume and run_dir is None:
        raise ValueError("resume=True needs the `run_dir` of the run to continue.")
    model, training, validation = _prepare(model, samples, validation, config)
    files = None if run_dir is None else RunFiles(run_dir)
    if resume:
        config = _resumed_config(config, files)
    else:
        config = _resolved(config)
        if files is not None:
            files.start(config.to_dict())
    return _run(model, training, validation, config, files, progress, hyperparams)


def _initial_state(model, optimizer, config: TrainConfig, validation) -> State:
    key = jax.random.key_data(jax.random.key(config.seed))
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    return State(model, opt_state, key, None if validation is None else model)


def _run(model, training, validation, config, files, progress, hyperparams):
    scale = acceleration_scale(training.qdd) if config.scale_accelerations else None
    loop = _Loop(config, training, validation, scale)
    state, meta = _initial_state(model, loop.optimizer, config, validation), Meta()
    loop.files, loop.progress = files, progress
    loop.fingerprint = fingerprint(training, validation)
    if files is not None:
        state, meta = _runfiles.restore(files, state, loop.fingerprint) or (state, meta)
        files.write_config(config.to_dict())
        files.remove_temporaries()
        loop.history = files.history_until(meta.step)
    state, meta = loop.run(state, meta)
    if files is not None:
        files.save_models(state, hyperparams, config.precision)
    return TrainResult(
        model=state.model,
        best_model=state.model if state.best_model is None else state.best_model,
        history=loop.history,
        steps=meta.step,
        best_validation_loss=meta.best_validation_loss,
        stopped_early=meta.stopped_early,
        acceleration_scale=scale,
    )
