"""lddnn: learn Lagrangians and Lagrangian densities with neural networks, predict the
dynamics they imply, and keep the conservation laws that follow from them."""

from lddnn import systems as systems
from lddnn.data import DataError as DataError, Dataset as Dataset
from lddnn.field import (
    LatticeLagrangian as LatticeLagrangian,
    field_accelerations as field_accelerations,
    field_energy as field_energy,
    field_energy_density as field_energy_density,
    field_lagrangian as field_lagrangian,
)
from lddnn.lattice import (
    Lattice as Lattice,
    chain as chain,
    graph as graph,
    grid as grid,
)
from lddnn.evaluate import (
    energy_error as energy_error,
    evaluate_model as evaluate_model,
    rollout_error as rollout_error,
    valid_prediction_time as valid_prediction_time,
)
from lddnn.integrate import IntegrationError as IntegrationError, rollout as rollout
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
from lddnn.nn import (
    LocalDensity as LocalDensity,
    MLPLagrangian as MLPLagrangian,
    StructuredLagrangian as StructuredLagrangian,
    load_model as load_model,
    make_model as make_model,
    save_model as save_model,
)
from lddnn.train import (
    NonFiniteLossError as NonFiniteLossError,
    Samples as Samples,
    TrainConfig as TrainConfig,
    TrainResult as TrainResult,
)

__version__ = "0.1.0"
