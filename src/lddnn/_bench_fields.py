"""Accuracy benchmark of a learned field density: sine-Gordon on a chain.

A `LocalDensity` is trained on the exact accelerations of random smooth states of a
short periodic chain (32 sites), then put on a chain 32 times longer (1024 sites,
the same spacing) and rolled out from smooth initial states of that chain. The
prediction is scored against the true lattice dynamics, so the benchmark measures
both how well one neighbourhood's density was learned and whether it carries over
to a lattice it never saw (translation invariance of one shared network).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SineGordonSettings", "accuracy_sine_gordon", "training_samples"]


@dataclasses.dataclass(frozen=True)
class SineGordonSettings:
    """Everything the benchmark's numbers depend on.

    The test states are the sine-Gordon system's own smooth random states, with
    root-mean-square amplitude `amplitude` (0.75: |φ| reaches about 2.5, where
    sin φ is far from linear, and here and there the field crosses the barrier
    φ = ±π). Training states cover more than the rollouts visit: a random offset
    of the whole field in ±`offset_range`, fluctuations of random size and
    correlation length, and velocities with a random offset of their own. (The
    rollouts move energy from the potential into the motion: by t = 5 the velocities'
    RMS has grown from 0.375 to about 0.7, so the training velocities stay broad.)

    The density is parity invariant by construction (`symmetric`), as the true
    total Lagrangian is. Training runs in float32 and solves for the accelerations
    of the 32-site training chain with conjugate gradients (`training_solver`):
    M is close to the identity there, so a few iterations suffice, and unlike the
    host-side band solve they compile into the step, which made a step about four
    times faster; the many cheap steps are what brought the acceleration error down
    (3000 steps in float64 left it ten times higher). The rollouts and all scores
    run in float64 with the band solve.
    """

    train_sites: int = 32
    test_sites: int = 1024
    spacing: float = 0.25
    correlation_length: float = 2.0
    amplitude: float = 0.75
    t_end: float = 10.0
    save_points: int = 101
    test_states: int = 4
    train_states: int = 8192
    offset_range: float = 1.0
    fluctuation_range: tuple[float, float] = (0.05, 1.2)
    length_range: tuple[float, float] = (0.5, 3.0)
    velocity_offset_range: float = 2.0
    velocity_fluctuation_range: tuple[float, float] = (0.05, 1.5)
    width: int = 64
    depth: int = 2
    activation: str = "softplus"
    field_scale: float = 1.0
    velocity_scale: float = 1.0
    difference_scale: float | None = 0.25
    symmetric: bool = True
    training_solver: str = "cg"
    steps: int = 28000
    batch_size: int = 16
    learning_rate: float = 1e-2
    decay_factor: float = 1e-3
    warmup_steps: int = 100
    precision: str = "float32"
    rtol: float = 1e-10
    seed: int = 0


def _system(settings: SineGordonSettings, sites: int):
    from lddnn.systems._fields import SINE_GORDON

    params = SINE_GORDON.params(
        sites=sites,
        spacing=settings.spacing,
        correlation_length=settings.correlation_length,
        amplitude=settings.amplitude,
    )
    return SINE_GORDON, params


def _periodic_smooth(rng, count: int, sites: int, spacing: float, lengths, rms):
    """(count, sites) random fields with Gaussian correlation exp(−r²/(2ℓ²)), one
    correlation length ℓ and one root-mean-square value per field (zero mean)."""
    m = np.arange(1, sites // 2 + 1)
    k = 2 * np.pi * m / (sites * spacing)
    phase = np.outer(np.arange(sites) * spacing, k)
    basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1)
    weights = np.exp(-((np.concatenate([k, k])[None] * lengths[:, None]) ** 2) / 4)
    coefficients = rng.standard_normal((count, basis.shape[1])) * weights
    fields = coefficients @ basis.T
    norm = np.sqrt(np.mean(fields**2, axis=1, keepdims=True))
    return rms[:, None] * fields / norm


def training_samples(settings: SineGordonSettings, seed: int):
    """Random smooth states on the training chain with their exact accelerations,
    from the hand-derived sine-Gordon equations (no finite differences)."""
    from lddnn.train import Samples

    system, params = _system(settings, settings.train_sites)
    rng = np.random.default_rng(seed)
    count, sites, h = settings.train_states, settings.train_sites, settings.spacing

    def fields(offset: float, sizes):
        lengths = rng.uniform(*settings.length_range, count)
        rms = rng.uniform(*sizes, count)
        shift = rng.uniform(-offset, offset, (count, 1))
        return shift + _periodic_smooth(rng, count, sites, h, lengths, rms)

    phi = fields(settings.offset_range, settings.fluctuation_range)
    phid = fields(settings.velocity_offset_range, settings.velocity_fluctuation_range)
    equations = jax.vmap(lambda a, b: system.equations_of_motion(a, b, 0.0, params))
    phidd = np.asarray(equations(jnp.asarray(phi), jnp.asarray(phid)))
    return Samples(phi, phid, phidd)


def _test_states(settings: SineGordonSettings, seed: int):
    system, params = _system(settings, settings.test_sites)
    keys = jax.random.split(jax.random.key(seed), settings.test_states)
    states = [system.sample_initial_state(key, params) for key in keys]
    return jnp.stack([s[0] for s in states]), jnp.stack([s[1] for s in states])


def _train(settings: SineGordonSettings):
    from lddnn import nn, train
    from lddnn.field import LatticeLagrangian

    system, params = _system(settings, settings.train_sites)
    samples = training_samples(settings, settings.seed)
    density = nn.make_model(
        "density",
        stencil_size=3,
        width=settings.width,
        depth=settings.depth,
        activation=settings.activation,
        kinetic=1.0,
        field_scale=settings.field_scale,
        velocity_scale=settings.velocity_scale,
        difference_scale=settings.difference_scale,
        symmetric=settings.symmetric,
        seed=settings.seed,
        dtype=settings.precision,
    )
    model = LatticeLagrangian(
        density, system.lattice(params), solver=settings.training_solver
    )
    config = train.TrainConfig(
        steps=settings.steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        schedule="cosine",
        decay_factor=settings.decay_factor,
        warmup_steps=settings.warmup_steps,
        scale_accelerations=True,
        precision=settings.precision,
        seed=settings.seed,
        log_every=max(settings.steps // 20, 1),
        checkpoint_every=settings.steps,
    )
    start = time.perf_counter()
    result = train.train(model, samples, config)
    return result, time.perf_counter() - start


def _relative_acceleration_error(model, settings: SineGordonSettings) -> float:
    """‖φ̈_θ − φ̈‖ / ‖φ̈‖ on fresh states of the training distribution."""
    from lddnn.train import predicted_accelerations

    held_out = dataclasses.replace(settings, train_states=256)
    samples = training_samples(held_out, settings.seed + 1)
    samples = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), samples)
    predicted = predicted_accelerations(model, samples)
    error = np.linalg.norm(predicted - samples.qdd)
    return float(error / np.linalg.norm(samples.qdd))


def _drift(energies, scale) -> float:
    """max over states and times of |E(t) − E(0)| / scale (per state)."""
    energies = np.asarray(energies)
    return float(np.max(np.abs(energies - energies[:, :1]) / scale[:, None]))


def accuracy_sine_gordon(settings: SineGordonSettings | None = None) -> dict:
    """Train a sine-Gordon density on 32 sites, roll it out on 1024 sites to t = 10
    and score it against the true lattice dynamics.

    Reports `field_error` (relative L2 of the predicted field over all states, times
    and sites; goal 1e-2), `energy_drift` (the largest change of the learned model's
    own energy along its rollout; goal 1e-3) and `true_energy_drift` (the same for
    the true energy of the predicted states, which measures how far the prediction
    leaves the true energy shell), both relative to the true initial energy. The
    learned energy is compared with the true scale because a learned density is
    fixed only up to an additive constant per site, which would make the learned
    initial energy an arbitrary denominator.
    """
    import lddnn
    from lddnn import field, nn

    settings = SineGordonSettings() if settings is None else settings
    if settings.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    result, train_seconds = _train(settings)
    # Rollouts run in float64 whatever the training precision, so the scores
    # measure the learned density and not the round-off of the integration.
    jax.config.update("jax_enable_x64", True)
    density = nn.cast_model(result.model.density, jnp.float64)
    system, params = _system(settings, settings.test_sites)
    lattice = system.lattice(params)
    learned = field.LatticeLagrangian(density, lattice)
    truth = system.lagrangian(params)
    small = learned.on(system.lattice(_system(settings, settings.train_sites)[1]))
    acceleration_error = _relative_acceleration_error(small, settings)
    q0, qd0 = _test_states(settings, settings.seed + 7)
    t = jnp.linspace(0.0, settings.t_end, settings.save_points)
    options = {"solver": "dopri5", "rtol": settings.rtol, "atol": settings.rtol}
    start = time.perf_counter()
    q_true, qd_true = lddnn.rollout(truth, q0, qd0, t, params, **options)
    truth_seconds = time.perf_counter() - start
    start = time.perf_counter()
    q_pred, qd_pred = lddnn.rollout(learned, q0, qd0, t, **options)
    rollout_seconds = time.perf_counter() - start

    def energies(lagrangian, q, qd, p=None):
        one = lambda a, b: lddnn.energy(lagrangian, a, b, 0.0, p)
        return jax.vmap(jax.vmap(one))(q, qd)

    true_initial = np.asarray(energies(truth, q0[:, None], qd0[:, None], params))[:, 0]
    field_error = np.linalg.norm(q_pred - q_true) / np.linalg.norm(q_true)
    return {
        "benchmark": "accuracy-sine-gordon",
        "field_error": float(field_error),
        "goal_field_error": 1e-2,
        "energy_drift": _drift(energies(learned, q_pred, qd_pred), true_initial),
        "true_energy_drift": _drift(
            energies(truth, q_pred, qd_pred, params), true_initial
        ),
        "reference_energy_drift": _drift(
            energies(truth, q_true, qd_true, params), true_initial
        ),
        "goal_energy_drift": 1e-3,
        "acceleration_error": acceleration_error,
        "final_loss": result.history[-1]["loss"],
        "train_seconds": train_seconds,
        "truth_rollout_seconds": truth_seconds,
        "rollout_seconds": rollout_seconds,
        "train_sites": settings.train_sites,
        "test_sites": settings.test_sites,
        "t_end": settings.t_end,
        "max_abs_field": float(np.max(np.abs(q_true))),
        "settings": dataclasses.asdict(settings),
    }
