"""The built-in reference systems, by name."""

from __future__ import annotations

from lddnn.systems._oscillators import DOUBLE_PENDULUM, HARMONIC_OSCILLATOR, PENDULUM
from lddnn.systems._particles import (
    CHARGED_PARTICLE_MAGNETIC,
    KEPLER,
    RELATIVISTIC_PARTICLE,
)
from lddnn.systems._system import MechanicalSystem

_SYSTEMS = {
    system.name: system
    for system in (
        HARMONIC_OSCILLATOR,
        PENDULUM,
        DOUBLE_PENDULUM,
        KEPLER,
        RELATIVISTIC_PARTICLE,
        CHARGED_PARTICLE_MAGNETIC,
    )
}


def names() -> list[str]:
    """The names of the built-in systems."""
    return list(_SYSTEMS)


def get(name: str) -> MechanicalSystem:
    """The built-in system called `name`; a ValueError lists the known names."""
    try:
        return _SYSTEMS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown system {name!r}; the built-in systems are "
            f"{', '.join(_SYSTEMS)}."
        ) from None
