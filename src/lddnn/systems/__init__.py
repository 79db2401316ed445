"""Reference systems with known Lagrangians, and their ground-truth data.

Mechanical systems are `MechanicalSystem`s: a Lagrangian, hand-derived equations of
motion, default parameters, which coordinates are angles, a seeded sampler of initial
states and an energy scale; `simulate` integrates one into a `lddnn.data.Dataset`.
Fields on lattices are `FieldSystem`s, the same with a local density in place of the
Lagrangian; `simulate_field` integrates one into `FieldTrajectories`.

`get(name)` returns either kind, `names()` lists the mechanical systems and
`field_names()` the fields.
"""

from lddnn.systems._field_simulate import (
    FieldTrajectories as FieldTrajectories,
    rollout_field as rollout_field,
    simulate_field as simulate_field,
)
from lddnn.systems._fields import (
    KLEIN_GORDON as KLEIN_GORDON,
    MEMBRANE_2D as MEMBRANE_2D,
    PHI4 as PHI4,
    SINE_GORDON as SINE_GORDON,
    WAVE_1D as WAVE_1D,
    WAVE_1D_CENTRAL as WAVE_1D_CENTRAL,
    FieldSystem as FieldSystem,
    sine_gordon_kink as sine_gordon_kink,
)
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
from lddnn.systems._registry import (
    field_names as field_names,
    get as get,
    names as names,
)
from lddnn.systems._simulate import (
    sample_states as sample_states,
    simulate as simulate,
)
from lddnn.systems._system import MechanicalSystem as MechanicalSystem
