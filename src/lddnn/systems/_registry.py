"""The built-in reference systems, by name."""

from __future__ import annotations

from lddnn.systems._fields import FIELD_SYSTEMS, FieldSystem
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
# Fields are kept apart: callers of `names()` treat every entry as a mechanical
# system (coordinates, `simulate` into a `Dataset`), which a field is not.
_FIELDS = {system.name: system for system in FIELD_SYSTEMS}


def names() -> list[str]:
    """The names of the built-in mechanical systems."""
    return list(_SYSTEMS)


def field_names() -> list[str]:
    """The names of the built-in fields on lattices."""
    return list(_FIELDS)


def get(name: str) -> MechanicalSystem | FieldSystem:
    """The built-in system or field called `name`; a ValueError lists the known
    names."""
    try:
        return _SYSTEMS[name] if name in _SYSTEMS else _FIELDS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown system {name!r}; the built-in systems are "
            f"{', '.join(_SYSTEMS)}, and the fields {', '.join(_FIELDS)}."
        ) from None
