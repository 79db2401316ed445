"""Reference mechanical systems with known Lagrangians, and their ground-truth data.

Each system is a `MechanicalSystem`: its Lagrangian, hand-derived equations of motion,
default parameters, which coordinates are angles, a seeded sampler of initial states
and an energy scale. `get(name)` returns one, `names()` lists them, and `simulate`
integrates a system's own Lagrangian into a `lddnn.data.Dataset`.
"""

from lddnn.systems._oscillators import (
    DOUBLE_PENDULUM as DOUBLE_PENDULUM,
    HARMONIC_OSCILLATOR as HARMONIC_OSCILLATOR,
    PENDULUM as PENDULUM,
)
from lddnn.systems._particles import (
    CHARGED_PARTICLE_MAGNETIC as CHARGED_PARTICLE_MAGNETIC,
    KEPLER as KEPLER,
    RELATIVISTIC_PARTICLE as RELATIVISTIC_PARTICLE,
)
from lddnn.systems._registry import get as get, names as names
from lddnn.systems._simulate import (
    sample_states as sample_states,
    simulate as simulate,
)
from lddnn.systems._system import MechanicalSystem as MechanicalSystem
