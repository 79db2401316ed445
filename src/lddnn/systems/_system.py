"""The description of a reference mechanical system with a known Lagrangian."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def with_overrides(name: str, defaults: dict, overrides: dict) -> dict[str, Any]:
    """`defaults` with `overrides` applied; a ValueError names the valid parameters
    when an override is unknown."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise ValueError(
            f"System {name!r} has no parameter {listed}; its parameters are "
            f"{', '.join(defaults)}."
        )
    return {**defaults, **overrides}


@dataclasses.dataclass(frozen=True)
class MechanicalSystem:
    """A mechanical system with a known Lagrangian and hand-derived dynamics.

    Attributes:
        name: the command-line name, e.g. "double-pendulum".
        description: one line saying what the system is.
        n: number of coordinates.
        coordinate_names: a name per coordinate.
        angles: per coordinate, whether it is an angle (models embed those as
            (cos, sin)).
        default_params: parameter names and default values.
        lagrangian: `lagrangian(q, qd, t, params) -> scalar`.
        equations_of_motion: `equations_of_motion(q, qd, t, params) -> qdd`, derived by
            hand and written out without automatic differentiation, so that it checks
            the Euler–Lagrange machinery independently.
        sample_initial_state: `sample_initial_state(key, params) -> (q0, qd0)`, one
            state of shape (n,) each; split the key and vmap for many.
        energy_scale: `energy_scale(params) -> float`, a typical energy magnitude of
            the sampled states, the denominator of relative energy errors.
        sample_state: optional `sample_state(key, params) -> (q, qd)`, one state
            drawn independently from the region of state space that trajectories
            started by `sample_initial_state` visit. Training on such states covers
            that region evenly, where states along a few trajectories are
            correlated; systems without it are sampled along trajectories.
    """

    name: str
    description: str
    n: int
    coordinate_names: tuple[str, ...]
    angles: tuple[bool, ...]
    default_params: dict[str, float]
    lagrangian: Callable[..., Any]
    equations_of_motion: Callable[..., Any]
    sample_initial_state: Callable[..., Any]
    energy_scale: Callable[..., Any]
    sample_state: Callable[..., Any] | None = None

    def params(self, **overrides) -> dict[str, Any]:
        """The default parameters with `overrides` applied.

        Raises a ValueError naming the valid parameters when an override is unknown.
        """
        return with_overrides(self.name, self.default_params, overrides)
