"""lddnn: learn Lagrangians and Lagrangian densities with neural networks, predict the
dynamics they imply, and keep the conservation laws that follow from them."""

from lddnn.mechanics import (
    SingularMassMatrixError as SingularMassMatrixError,
    accelerations as accelerations,
    energy as energy,
    mass_matrix as mass_matrix,
    momentum as momentum,
    poisson_bracket as poisson_bracket,
    split_state as split_state,
    vector_field as vector_field,
)

__version__ = "0.1.0"
