"""Particles in the plane: the Kepler problem, a relativistic particle in a potential
and a charged particle in a uniform magnetic field."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lddnn.systems._system import MechanicalSystem


def _unit_vector(angle):
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)])


# Kepler two-body problem, reduced to the relative position r = r2 − r1 in the orbital
# plane: L = ½ μ |ṙ|² + G m1 m2 / |r| with the reduced mass μ = m1 m2 / (m1 + m2).


def _kepler_lagrangian(q, qd, t, params):
    m1, m2, G = params["m1"], params["m2"], params["G"]
    reduced_mass = m1 * m2 / (m1 + m2)
    return 0.5 * reduced_mass * qd @ qd + G * m1 * m2 / jnp.sqrt(q @ q)


def _kepler_equations(q, qd, t, params):
    """μ r̈ = −G m1 m2 r / |r|³, i.e. r̈ = −G (m1 + m2) r / |r|³."""
    total_mass = params["m1"] + params["m2"]
    return -params["G"] * total_mass * q / jnp.sqrt(q @ q) ** 3


def _kepler_sample(key, params):
    """Bound orbits: |r| ∈ U[0.5, 1.5), a uniform direction, and a velocity of
    U[0.8, 1.2) times the circular speed √(G(m1 + m2)/|r|) along the orbit plus up to
    ±0.1 of it radially (so the energy stays negative)."""
    radius_key, angle_key, speed_key, radial_key = jax.random.split(key, 4)
    radius = jax.random.uniform(radius_key, (), minval=0.5, maxval=1.5)
    angle = jax.random.uniform(angle_key, (), minval=0.0, maxval=2 * jnp.pi)
    circular = jnp.sqrt(params["G"] * (params["m1"] + params["m2"]) / radius)
    along = jax.random.uniform(speed_key, (), minval=0.8, maxval=1.2)
    radial = jax.random.uniform(radial_key, (), minval=-0.1, maxval=0.1)
    outward, forward = _unit_vector(angle), _unit_vector(angle + jnp.pi / 2)
    return radius * outward, circular * (along * forward + radial * outward)


KEPLER = MechanicalSystem(
    name="kepler",
    description=(
        "two gravitating bodies m1, m2, reduced to their relative position (x, y) in "
        "the orbital plane"
    ),
    n=2,
    coordinate_names=("x", "y"),
    angles=(False, False),
    default_params={"m1": 1.0, "m2": 1.0, "G": 1.0},
    lagrangian=_kepler_lagrangian,
    equations_of_motion=_kepler_equations,
    sample_initial_state=_kepler_sample,
    # The binding energy at unit separation.
    energy_scale=lambda params: params["G"] * params["m1"] * params["m2"],
)


# Relativistic particle in the plane in the potential V = ½ k |x|²:
# L = −m c² √(1 − |ẋ|²/c²) − V(x).


def _relativistic_lagrangian(q, qd, t, params):
    m, c, k = params["m"], params["c"], params["k"]
    return -m * c**2 * jnp.sqrt(1 - qd @ qd / c**2) - 0.5 * k * q @ q


def _relativistic_equations(q, qd, t, params):
    """d/dt (γ m v) = F with F = −k x. Since dγ/dt = γ³ (v·a)/c², dotting with v
    gives v·a = F·v / (γ³ m), and so a = (F − (F·v) v / c²) / (γ m)."""
    m, c, k = params["m"], params["c"], params["k"]
    gamma = 1 / jnp.sqrt(1 - qd @ qd / c**2)
    force = -k * q
    return (force - (force @ qd) * qd / c**2) / (gamma * m)


def _relativistic_sample(key, params):
    """x ∈ U[−1, 1)², speed U[0, 0.8) c in a uniform direction."""
    position_key, speed_key, angle_key = jax.random.split(key, 3)
    q = jax.random.uniform(position_key, (2,), minval=-1.0, maxval=1.0)
    speed = params["c"] * jax.random.uniform(speed_key, (), minval=0.0, maxval=0.8)
    angle = jax.random.uniform(angle_key, (), minval=0.0, maxval=2 * jnp.pi)
    return q, speed * _unit_vector(angle)


RELATIVISTIC_PARTICLE = MechanicalSystem(
    name="relativistic-particle",
    description=(
        "a particle of rest mass m in the plane, L = −m c² √(1 − v²/c²) − ½ k |x|², "
        "at speeds up to 0.8 c"
    ),
    n=2,
    coordinate_names=("x", "y"),
    angles=(False, False),
    default_params={"m": 1.0, "c": 1.0, "k": 1.0},
    lagrangian=_relativistic_lagrangian,
    equations_of_motion=_relativistic_equations,
    sample_initial_state=_relativistic_sample,
    # The rest energy: the energy E = γ m c² + V includes it.
    energy_scale=lambda params: params["m"] * params["c"] ** 2,
)


# Charged particle in the plane in a uniform magnetic field B along z, with the
# symmetric-gauge vector potential A = (B/2)(−y, x, 0):
# L = ½ m |ẋ|² + charge · ẋ·A = ½ m |ẋ|² + (charge B / 2)(x ẏ − y ẋ).


def _charged_lagrangian(q, qd, t, params):
    m, charge, B = params["m"], params["charge"], params["B"]
    (x, y), (vx, vy) = q, qd
    return 0.5 * m * qd @ qd + 0.5 * charge * B * (x * vy - y * vx)


def _charged_equations(q, qd, t, params):
    """The Lorentz force m a = charge v × B: ẍ = ω ẏ, ÿ = −ω ẋ with ω = charge B/m."""
    frequency = params["charge"] * params["B"] / params["m"]
    return frequency * jnp.stack([qd[1], -qd[0]])


def _charged_sample(key, params):
    """x ∈ U[−1, 1)², ẋ ∈ U[−1, 1)²."""
    q, qd = jax.random.uniform(key, (2, 2), minval=-1.0, maxval=1.0)
    return q, qd


CHARGED_PARTICLE_MAGNETIC = MechanicalSystem(
    name="charged-particle-magnetic",
    description=(
        "a charged particle in the plane in a uniform magnetic field B normal to it "
        "(symmetric gauge); it circles with the Larmor radius m v / (charge B)"
    ),
    n=2,
    coordinate_names=("x", "y"),
    angles=(False, False),
    default_params={"m": 1.0, "charge": 1.0, "B": 1.0},
    lagrangian=_charged_lagrangian,
    equations_of_motion=_charged_equations,
    sample_initial_state=_charged_sample,
    # The kinetic energy at unit speed (the magnetic force does no work).
    energy_scale=lambda params: 0.5 * params["m"],
)
