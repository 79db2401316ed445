"""Oscillators: the harmonic oscillator, the pendulum and the double pendulum."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lddnn.systems._system import MechanicalSystem

TWO_PI = 2 * jnp.pi


# Harmonic oscillator: L = ½ m ẋ² − ½ k x².


def _oscillator_lagrangian(q, qd, t, params):
    return 0.5 * params["m"] * qd @ qd - 0.5 * params["k"] * q @ q


def _oscillator_equations(q, qd, t, params):
    return -params["k"] / params["m"] * q


def _oscillator_sample(key, params):
    """x ∈ U[−1, 1), ẋ ∈ U[−1, 1)."""
    q, qd = jax.random.uniform(key, (2, 1), minval=-1.0, maxval=1.0)
    return q, qd


HARMONIC_OSCILLATOR = MechanicalSystem(
    name="harmonic-oscillator",
    description="a mass m on a spring of stiffness k, L = ½ m ẋ² − ½ k x²",
    n=1,
    coordinate_names=("x",),
    angles=(False,),
    default_params={"m": 1.0, "k": 1.0},
    lagrangian=_oscillator_lagrangian,
    equations_of_motion=_oscillator_equations,
    sample_initial_state=_oscillator_sample,
    # The potential energy at the edge of the sampled positions, |x| = 1.
    energy_scale=lambda params: 0.5 * params["k"],
)


# Pendulum: L = ½ m l² θ̇² + m g l cos θ, θ from the downward vertical.


def _pendulum_lagrangian(q, qd, t, params):
    m, l, g = params["m"], params["l"], params["g"]
    return 0.5 * m * l**2 * qd[0] ** 2 + m * g * l * jnp.cos(q[0])


def _pendulum_equations(q, qd, t, params):
    return -params["g"] / params["l"] * jnp.sin(q)


def _pendulum_sample(key, params):
    """θ ∈ U[−π, π), θ̇ ∈ U[−1, 1)."""
    angle_key, rate_key = jax.random.split(key)
    q = jax.random.uniform(angle_key, (1,), minval=-jnp.pi, maxval=jnp.pi)
    qd = jax.random.uniform(rate_key, (1,), minval=-1.0, maxval=1.0)
    return q, qd


PENDULUM = MechanicalSystem(
    name="pendulum",
    description="a mass m on a rigid massless rod of length l under gravity g",
    n=1,
    coordinate_names=("theta",),
    angles=(True,),
    default_params={"m": 1.0, "l": 1.0, "g": 9.8},
    lagrangian=_pendulum_lagrangian,
    equations_of_motion=_pendulum_equations,
    sample_initial_state=_pendulum_sample,
    # The potential energy of the horizontal rod above the hanging one.
    energy_scale=lambda params: params["m"] * params["g"] * params["l"],
)


# Double pendulum: absolute angles θ1, θ2 from the downward vertical,
# L = ½ (m1 + m2) l1² θ̇1² + ½ m2 l2² θ̇2² + m2 l1 l2 θ̇1 θ̇2 cos(θ1 − θ2)
#     + (m1 + m2) g l1 cos θ1 + m2 g l2 cos θ2.


def _double_pendulum_lagrangian(q, qd, t, params):
    m1, m2, l1, l2, g = (params[k] for k in ("m1", "m2", "l1", "l2", "g"))
    (theta1, theta2), (omega1, omega2) = q, qd
    kinetic = (
        0.5 * (m1 + m2) * l1**2 * omega1**2
        + 0.5 * m2 * l2**2 * omega2**2
        + m2 * l1 * l2 * omega1 * omega2 * jnp.cos(theta1 - theta2)
    )
    potential = -(m1 + m2) * g * l1 * jnp.cos(theta1) - m2 * g * l2 * jnp.cos(theta2)
    return kinetic - potential


def _double_pendulum_equations(q, qd, t, params):
    """The Euler–Lagrange equations, divided by l1 and m2 l2 respectively, are

        (m1 + m2) l1 θ̈1 + m2 l2 cos Δ θ̈2 = −m2 l2 θ̇2² sin Δ − (m1 + m2) g sin θ1
        l1 cos Δ θ̈1 + l2 θ̈2 = l1 θ̇1² sin Δ − g sin θ2,    Δ = θ1 − θ2,

    solved here by Cramer's rule; the determinant is l1 l2 (m1 + m2 sin² Δ) > 0.
    """
    m1, m2, l1, l2, g = (params[k] for k in ("m1", "m2", "l1", "l2", "g"))
    (theta1, theta2), (omega1, omega2) = q, qd
    cos, sin = jnp.cos(theta1 - theta2), jnp.sin(theta1 - theta2)
    a11, a12, a21, a22 = (m1 + m2) * l1, m2 * l2 * cos, l1 * cos, l2
    b1 = -m2 * l2 * omega2**2 * sin - (m1 + m2) * g * jnp.sin(theta1)
    b2 = l1 * omega1**2 * sin - g * jnp.sin(theta2)
    determinant = a11 * a22 - a12 * a21
    return jnp.stack([b1 * a22 - a12 * b2, a11 * b2 - a21 * b1]) / determinant


def _double_pendulum_sample(key, params):
    """The benchmark protocol: θ ∈ U[0, 2π)², θ̇ ∈ U[0, 0.1)²."""
    angle_key, rate_key = jax.random.split(key)
    q = jax.random.uniform(angle_key, (2,), minval=0.0, maxval=TWO_PI)
    qd = jax.random.uniform(rate_key, (2,), minval=0.0, maxval=0.1)
    return q, qd


def _double_pendulum_potential(q, params):
    m1, m2, l1, l2, g = (params[k] for k in ("m1", "m2", "l1", "l2", "g"))
    return -(m1 + m2) * g * l1 * jnp.cos(q[..., 0]) - m2 * g * l2 * jnp.cos(q[..., 1])


_SHELL_CANDIDATES = 64


def _double_pendulum_state(key, params):
    """A state on the energy shell of a protocol initial state.

    A protocol state starts (almost) at rest at angles q0 ∈ U[0, 2π)², so its motion
    stays where V(q) ≤ E0 = V(q0). This draws q0, then angles q uniformly from that
    region (rejection among uniform candidates, q0 itself when none is accepted),
    then a velocity in a uniformly random direction whose kinetic energy is
    E0 − V(q). The velocity range [0, 0.1)² of the protocol adds at most 0.1 % of
    the energy scale, which is left out.
    """
    start_key, candidate_key, direction_key = jax.random.split(key, 3)
    q0 = jax.random.uniform(start_key, (2,), minval=0.0, maxval=TWO_PI)
    energy = _double_pendulum_potential(q0, params)
    candidates = jax.random.uniform(
        candidate_key, (_SHELL_CANDIDATES, 2), minval=0.0, maxval=TWO_PI
    )
    allowed = _double_pendulum_potential(candidates, params) <= energy
    q = jnp.where(allowed.any(), candidates[jnp.argmax(allowed)], q0)
    angle = jax.random.uniform(direction_key, (), minval=0.0, maxval=TWO_PI)
    direction = jnp.stack([jnp.cos(angle), jnp.sin(angle)])
    # ½ uᵀ M(q) u for the unit direction u: the Lagrangian's kinetic part.
    unit_kinetic = _double_pendulum_lagrangian(q, direction, 0.0, params) + (
        _double_pendulum_potential(q, params)
    )
    kinetic = jnp.maximum(energy - _double_pendulum_potential(q, params), 0.0)
    return q, direction * jnp.sqrt(kinetic / unit_kinetic)


def _double_pendulum_energy_scale(params):
    """(m1 + m2) g l1 + m2 g l2: the potential energy of both rods horizontal above
    both hanging (29.4 for the defaults)."""
    m1, m2, l1, l2, g = (params[k] for k in ("m1", "m2", "l1", "l2", "g"))
    return (m1 + m2) * g * l1 + m2 * g * l2


DOUBLE_PENDULUM = MechanicalSystem(
    name="double-pendulum",
    description=(
        "two masses on rigid massless rods in series under gravity; absolute angles "
        "from the downward vertical"
    ),
    n=2,
    coordinate_names=("theta1", "theta2"),
    angles=(True, True),
    default_params={"m1": 1.0, "m2": 1.0, "l1": 1.0, "l2": 1.0, "g": 9.8},
    lagrangian=_double_pendulum_lagrangian,
    equations_of_motion=_double_pendulum_equations,
    sample_initial_state=_double_pendulum_sample,
    energy_scale=_double_pendulum_energy_scale,
    sample_state=_double_pendulum_state,
)
