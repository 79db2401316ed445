"""Learnable Lagrangians: Equinox modules with the call `(q, qd, t, params) -> scalar`.

Two families of mechanical Lagrangians, both differentiated by exactly the same
Euler–Lagrange machinery as a hand-written Lagrangian (`lddnn.mechanics`):

* `MLPLagrangian`: the general L_θ(q, q̇[, t][, m]) of Lagrangian neural networks, an
  MLP on embedded inputs, optionally plus a fixed kinetic term ½ α |q̇|².
* `StructuredLagrangian`: L_θ = ½ q̇ᵀ C(q) C(q)ᵀ q̇ − V(q) with C lower triangular and
  a positive diagonal, so the velocity Hessian is symmetric positive definite by
  construction (the DeLaN form).

and one for fields: `LocalDensity`, a learnable local density ℓ_θ(φ_I, φ̇_I) on one
neighbourhood, which `lddnn.field.LatticeLagrangian` sums over the sites of a lattice.

`make_model` builds any of them from JSON-able hyperparameters, and `save_model` /
`load_model` store weights plus those hyperparameters so that a model reloads without
the script that trained it.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FourierFeatures",
    "LocalDensity",
    "MLPLagrangian",
    "StructuredLagrangian",
    "cast_model",
    "load_model",
    "make_model",
    "save_model",
]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}
# Points where a candidate activation's second derivative is probed. They avoid 0,
# where piecewise-linear functions have their kink, and span both saturated tails.
_PROBE_POINTS = (-2.3, -0.7, 0.4, 1.9)


def _resolve_activation(activation) -> Callable[[jax.Array], jax.Array]:
    """Look up a named activation or accept a callable; refuse vanishing curvature.

    The velocity Hessian M = ∂²L/∂q̇² of an MLP is a sum of terms proportional to the
    activation's second derivative, so a piecewise-linear activation (ReLU) makes M
    identically zero and the accelerations undefined.
    """
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS and activation != "relu":
            raise ValueError(
                f"Unknown activation {activation!r}; use one of "
                f"{sorted(_ACTIVATIONS)} or pass a callable."
            )
        function = _ACTIVATIONS.get(activation, jax.nn.relu)
        name = activation
    elif callable(activation):
        function, name = activation, getattr(activation, "__name__", repr(activation))
    else:
        raise ValueError(
            f"`activation` must be a name or a callable, but got {activation!r}."
        )
    points = jnp.asarray(_PROBE_POINTS, dtype=jnp.float32)
    curvature = jax.vmap(jax.grad(jax.grad(lambda x: function(x).sum())))(points)
    if not bool(jnp.any(jnp.abs(curvature) > 1e-6)):
        raise ValueError(
            f"The activation {name!r} has a vanishing second derivative, so the "
            "velocity Hessian ∂²L/∂q̇² of the network would be identically zero and "
            "the Euler–Lagrange equations could not be solved for the accelerations; "
            "use a smooth activation such as 'softplus', 'tanh' or 'sigmoid'."
        )
    return function


def _check_angles(angles, n: int) -> tuple[bool, ...]:
    angles = (False,) * n if angles is None else tuple(bool(a) for a in angles)
    if len(angles) != n:
        raise ValueError(
            f"`angles` has {len(angles)} entries but the system has n = {n} "
            "coordinates; give one flag per coordinate."
        )
    return angles


def _embed_coordinates(q, angles, coordinate_scale) -> jax.Array:
    """Angles as (cos, sin), so the model is 2π-periodic in them; others scaled."""
    mask = jnp.asarray(angles)
    linear = q / coordinate_scale
    parts = [jnp.where(mask, jnp.cos(q), linear)]
    if any(angles):
        parts.append(jnp.sin(q)[np.asarray(angles)])
    return jnp.concatenate(parts)


def _params_vector(params, names: tuple[str, ...], dtype) -> jax.Array:
    if not names:
        return jnp.zeros((0,), dtype)
    if params is None:
        raise ValueError(
            f"The model takes the parameters {list(names)} as inputs, but `params` "
            "is None; pass a dict with those names."
        )
    return jnp.stack([jnp.asarray(params[name], dtype) for name in names])


class FourierFeatures(eqx.Module):
    """Random Fourier features γ(x) = [cos 2πBx, sin 2πBx], B ~ N(0, σ²) fixed.

    They counter the spectral bias of MLPs towards low frequencies (Tancik et al.
    2020). B is not trained: gradients are stopped so an optimizer leaves it alone.
    """

    frequencies: jax.Array

    def __init__(self, in_size: int, count: int, scale: float, *, key):
        self.frequencies = scale * jax.random.normal(key, (count, in_size))

    def __call__(self, x: jax.Array) -> jax.Array:
        phase = 2 * jnp.pi * jax.lax.stop_gradient(self.frequencies) @ x
        return jnp.concatenate([x, jnp.cos(phase), jnp.sin(phase)])

    @property
    def out_size(self) -> int:
        count, in_size = self.frequencies.shape
        return in_size + 2 * count


class MLPLagrangian(eqx.Module):
    """L_θ(q, q̇, t; m) = s · MLP(embed(q), q̇/v, [t/τ], [m]) + ½ α |q̇|².

    Angle coordinates enter as (cos q, sin q); other coordinates are divided by
    `coordinate_scale`, velocities by `velocity_scale` and time by `time_scale`, so
    the network sees inputs of order one. `kinetic` is α: the known kinetic term
    makes M = αI + ∂²(network)/∂q̇² at initialization instead of the near-zero,
    near-singular Hessian of a freshly initialized MLP, which otherwise keeps training
    on the "zero acceleration" plateau for thousands of steps. α = 0 gives the plain
    network of the paper.
    """

    mlp: eqx.nn.MLP
    fourier: FourierFeatures | None
    angles: tuple[bool, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    use_time: bool = eqx.field(static=True)
    kinetic: float = eqx.field(static=True)
    output_scale: float = eqx.field(static=True)
    velocity_scale: float = eqx.field(static=True)
    coordinate_scale: float = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)

    def __init__(
        self,
        n: int,
        angles: Sequence[bool] | None = None,
        *,
        width: int = 500,
        depth: int = 4,
        activation: str | Callable = "softplus",
        kinetic: float = 0.0,
        output_scale: float = 1.0,
        velocity_scale: float = 1.0,
        coordinate_scale: float = 1.0,
        time_scale: float = 1.0,
        use_time: bool = False,
        param_names: Sequence[str] = (),
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        key,
    ):
        self.angles = _check_angles(angles, n)
        self.param_names = tuple(param_names)
        self.use_time = bool(use_time)
        self.kinetic = float(kinetic)
        self.output_scale = float(output_scale)
        self.velocity_scale = float(velocity_scale)
        self.coordinate_scale = float(coordinate_scale)
        self.time_scale = float(time_scale)
        in_size = n + sum(self.angles) + n + self.use_time + len(self.param_names)
        mlp_key, fourier_key = jax.random.split(key)
        if fourier_features:
            self.fourier = FourierFeatures(
                in_size, fourier_features, fourier_scale, key=fourier_key
            )
            in_size = self.fourier.out_size
        else:
            self.fourier = None
        self.mlp = eqx.nn.MLP(
            in_size,
            "scalar",
            width,
            depth,
            activation=_resolve_activation(activation),
            key=mlp_key,
        )

    def features(self, q, qd, t, params) -> jax.Array:
        """The network input: embedded coordinates, scaled velocities, time, m."""
        parts = [
            _embed_coordinates(q, self.angles, self.coordinate_scale),
            qd / self.velocity_scale,
        ]
        if self.use_time:
            parts.append(jnp.reshape(t, (1,)).astype(q.dtype) / self.time_scale)
        parts.append(_params_vector(params, self.param_names, q.dtype))
        x = jnp.concatenate(parts)
        return x if self.fourier is None else self.fourier(x)

    def __call__(self, q, qd, t=0.0, params=None) -> jax.Array:
        network = self.output_scale * self.mlp(self.features(q, qd, t, params))
        return network + 0.5 * self.kinetic * (qd @ qd)


class StructuredLagrangian(eqx.Module):
    """L_θ = ½ q̇ᵀ C(q) C(q)ᵀ q̇ − V(q), C lower triangular, diag C = softplus + ε.

    M = C Cᵀ is symmetric positive definite for every q, so the accelerations always
    exist (Lutter et al. 2019). Both C and V are MLPs of the embedded coordinates
    (and of m when `param_names` is given).
    """

    factor_net: eqx.nn.MLP
    potential_net: eqx.nn.MLP
    angles: tuple[bool, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    epsilon: float = eqx.field(static=True)
    diagonal_shift: float = eqx.field(static=True)
    potential_scale: float = eqx.field(static=True)
    coordinate_scale: float = eqx.field(static=True)

    def __init__(
        self,
        n: int,
        angles: Sequence[bool] | None = None,
        *,
        width: int = 64,
        depth: int = 2,
        activation: str | Callable = "softplus",
        epsilon: float = 1e-3,
        potential_scale: float = 1.0,
        coordinate_scale: float = 1.0,
        param_names: Sequence[str] = (),
        key,
    ):
        self.angles = _check_angles(angles, n)
        self.param_names = tuple(param_names)
        self.epsilon = float(epsilon)
        self.potential_scale = float(potential_scale)
        self.coordinate_scale = float(coordinate_scale)
        # softplus(0.5413) = 1: a freshly initialized C starts near the identity.
        self.diagonal_shift = 0.5413
        in_size = n + sum(self.angles) + len(self.param_names)
        function = _resolve_activation(activation)
        factor_key, potential_key = jax.random.split(key)
        entries = n * (n + 1) // 2
        self.factor_net = eqx.nn.MLP(
            in_size, entries, width, depth, activation=function, key=factor_key
        )
        self.potential_net = eqx.nn.MLP(
            in_size, "scalar", width, depth, activation=function, key=potential_key
        )

    def _features(self, q, params) -> jax.Array:
        return jnp.concatenate(
            [
                _embed_coordinates(q, self.angles, self.coordinate_scale),
                _params_vector(params, self.param_names, q.dtype),
            ]
        )

    def factor(self, q, params=None) -> jax.Array:
        """The lower-triangular C(q) with a positive diagonal, shape `(n, n)`."""
        n = q.shape[0]
        entries = self.factor_net(self._features(q, params))
        rows, cols = np.tril_indices(n)
        lower = jnp.zeros((n, n), entries.dtype).at[rows, cols].set(entries)
        diagonal = jax.nn.softplus(jnp.diag(lower) + self.diagonal_shift)
        return lower - jnp.diag(jnp.diag(lower)) + jnp.diag(diagonal + self.epsilon)

    def mass(self, q, params=None) -> jax.Array:
        """The mass matrix M(q) = C(q) C(q)ᵀ."""
        factor = self.factor(q, params)
        return factor @ factor.T

    def potential(self, q, params=None) -> jax.Array:
        """The potential energy V(q)."""
        return self.potential_scale * self.potential_net(self._features(q, params))

    def __call__(self, q, qd, t=0.0, params=None) -> jax.Array:
        momentum_like = self.factor(q, params).T @ qd
        return 0.5 * (momentum_like @ momentum_like) - self.potential(q, params)


class LocalDensity(eqx.Module):
    """ℓ_θ(φ_I, φ̇_I) = s · MLP(x(φ_I), φ̇_I / v₀) + ½ α |φ̇_centre|², on one
    neighbourhood I of k sites with c components each.

    One network serves every site of a lattice (`LatticeLagrangian(density,
    lattice)` sums it over all neighbourhoods), so a density trained on a small grid
    runs unchanged on a large one. The network sees the k·c field values and the
    k·c velocities of the neighbourhood, scaled to order one: x(φ_I) = φ_I / φ₀, or,
    with a `difference_scale` δ, the site's own value φ_c / φ₀ followed by the
    differences (φ_j − φ_c) / δ to its neighbours. Both are invertible linear maps
    of φ_I, so the family of densities is the same; the differences matter when the
    grid resolves the field finely. There neighbouring values nearly agree, and the
    gradient energy, e.g. ½ ((φ_{i+1} − φ_i)/Δx)², is a steep function of a small
    difference, which a network fed raw values must first learn to resolve.

    `kinetic` is α: summed over the lattice the known term gives ½ α Σ_i |φ̇_i|², so
    the sparse velocity Hessian starts as αI plus the network's small share, instead
    of the near-singular Hessian of a freshly initialized network (the field
    counterpart of `MLPLagrangian`'s kinetic prior).

    With `symmetric=True` the density is averaged over the point reflection of the
    stencil, ℓ_θ(φ_I, φ̇_I) → ½[ℓ_θ(φ_I, φ̇_I) + ℓ_θ(Rφ_I, Rφ̇_I)], where R reverses
    the neighbourhood's order. On a grid this maps every offset o to −o, so the model
    is exactly parity invariant by construction. It is meaningless on a graph, whose
    neighbourhoods have no such order.

    The density depends on neither t nor params (both are accepted and ignored).

    Arguments:
        stencil_size: k, the number of sites in a neighbourhood (`lattice.
            stencil_size`: 3 on a chain of radius 1, 5 on a 2-D star stencil).
        components: c for a field with c components per site (neighbourhoods of
            shape (k, c)), or None for a scalar field (shape (k,)).
        width, depth: the MLP's hidden width and number of hidden layers.
        activation: as for `MLPLagrangian`; ReLU and other activations without
            curvature are refused.
        kinetic: α of the known kinetic term (0 for none).
        symmetric: average over the stencil's point reflection.
        centre: the place of the site itself in the neighbourhood, which the kinetic
            term reads; None means k // 2, the centre of a grid stencil (use 0 on a
            graph, whose neighbourhoods list the node first).
        output_scale, field_scale, velocity_scale: s, φ₀ and v₀ above.
        difference_scale: δ above, the typical difference between neighbouring
            values (about Δx times the field's typical gradient); None feeds the
            raw values.
    """

    mlp: eqx.nn.MLP
    stencil_size: int = eqx.field(static=True)
    components: int | None = eqx.field(static=True)
    centre: int = eqx.field(static=True)
    symmetric: bool = eqx.field(static=True)
    kinetic: float = eqx.field(static=True)
    output_scale: float = eqx.field(static=True)
    field_scale: float = eqx.field(static=True)
    velocity_scale: float = eqx.field(static=True)
    difference_scale: float | None = eqx.field(static=True)

    def __init__(
        self,
        stencil_size: int,
        components: int | None = None,
        *,
        width: int = 64,
        depth: int = 2,
        activation: str | Callable = "softplus",
        kinetic: float = 0.0,
        symmetric: bool = False,
        centre: int | None = None,
        output_scale: float = 1.0,
        field_scale: float = 1.0,
        velocity_scale: float = 1.0,
        difference_scale: float | None = None,
        key,
    ):
        self.stencil_size = _positive_int(stencil_size, "stencil_size")
        self.components = (
            None if components is None else _positive_int(components, "components")
        )
        centre = self.stencil_size // 2 if centre is None else centre
        if not _is_index(centre, self.stencil_size):
            raise ValueError(
                f"`centre` is {centre!r}, but it must be a place in the neighbourhood, "
                f"an integer from 0 to {self.stencil_size - 1}."
            )
        self.centre = int(centre)
        self.symmetric = bool(symmetric)
        self.kinetic = float(kinetic)
        self.output_scale = float(output_scale)
        self.field_scale = float(field_scale)
        self.velocity_scale = float(velocity_scale)
        self.difference_scale = (
            None if difference_scale is None else float(difference_scale)
        )
        inputs = 2 * self.stencil_size * (self.components or 1)
        function = _resolve_activation(activation)
        self.mlp = eqx.nn.MLP(
            inputs, "scalar", width, depth, activation=function, key=key
        )

    def _values(self, phi) -> jax.Array:
        """x(φ_I): raw values, or the own value then differences, of order one."""
        if self.difference_scale is None:
            return jnp.ravel(phi) / self.field_scale
        own = phi[self.centre]
        others = jnp.delete(phi, self.centre, axis=0)
        differences = (others - own) / self.difference_scale
        own = jnp.ravel(own) / self.field_scale
        return jnp.concatenate([own, jnp.ravel(differences)])

    def _network(self, phi, phid) -> jax.Array:
        velocities = jnp.ravel(phid) / self.velocity_scale
        x = jnp.concatenate([self._values(phi), velocities])
        return self.output_scale * self.mlp(x)

    def __call__(self, phi, phid, t=0.0, params=None) -> jax.Array:
        expected = (self.stencil_size,)
        expected += () if self.components is None else (self.components,)
        if jnp.shape(phi) != expected or jnp.shape(phid) != expected:
            raise ValueError(
                f"The density takes neighbourhoods of shape {expected}, but `phi` has "
                f"shape {jnp.shape(phi)} and `phid` {jnp.shape(phid)}; build it with "
                "the lattice's `stencil_size` and the field's `components`."
            )
        value = self._network(phi, phid)
        if self.symmetric:
            value = 0.5 * (value + self._network(phi[::-1], phid[::-1]))
        own = phid[self.centre]
        return value + 0.5 * self.kinetic * jnp.sum(own * own)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` is {value!r}; use a positive integer.")
    return int(value)


def _is_index(value, size: int) -> bool:
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    return integer and 0 <= value < size


_KINDS = {
    "mlp": MLPLagrangian,
    "structured": StructuredLagrangian,
    "density": LocalDensity,
}


def cast_model(model: eqx.Module, dtype) -> eqx.Module:
    """The model with every floating-point array cast to `dtype`."""

    def cast(leaf):
        if eqx.is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, model)


def make_model(
    kind: str,
    n: int | Any = None,
    angles: Sequence[bool] | None = None,
    *,
    seed: int = 0,
    dtype: str = "float32",
    **hyperparams,
) -> eqx.Module:
    """Build a learnable Lagrangian of `kind` "mlp" or "structured" for n coordinates,
    or a learnable local density of `kind` "density".

    `n` may also be a system with attributes `n` and `angles`. A density takes no `n`
    or `angles`: its shape comes from the keywords `stencil_size` (and `components`),
    and the lattice is not part of it (`LatticeLagrangian(density, lattice)` puts it
    on one). Every other keyword goes to the model's constructor; all are JSON-able,
    so `save_model` can store them and `load_model` can rebuild the model.
    """
    if kind not in _KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; use one of {sorted(_KINDS)}.")
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "A float64 model was requested but JAX runs in 32-bit mode; enable "
            "jax_enable_x64 (the command line does this for --precision float64)."
        )
    key = jax.random.key(seed)
    if kind == "density":
        if n is not None or angles is not None:
            raise ValueError(
                "A density model takes `stencil_size` (and `components`) instead of "
                "`n` and `angles`; the number of sites belongs to the lattice."
            )
        if "stencil_size" not in hyperparams:
            raise ValueError(
                "A density model needs `stencil_size`, the number of sites in a "
                "neighbourhood (`lattice.stencil_size`)."
            )
        model = LocalDensity(key=key, **hyperparams)
    else:
        if n is None:
            raise ValueError(f"A model of kind {kind!r} needs `n`, its coordinates.")
        if not isinstance(n, int):
            n, angles = n.n, n.angles if angles is None else angles
        model = _KINDS[kind](n, angles, key=key, **hyperparams)
    return cast_model(model, jnp.dtype(dtype))


def _atomic_write(path: pathlib.Path, write: Callable[[Any], None], mode: str) -> None:
    """Write into a temporary file next to `path`, then rename it over `path`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, mode) as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _hyperparameter_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_suffix(".json")


def save_model(path, model: eqx.Module, hyperparams: dict) -> None:
    """Store the weights at `path` and the hyperparameters beside it as JSON.

    `hyperparams` are the arguments of `make_model` (`kind`, `n` or `stencil_size`,
    `angles`, `seed`, `dtype` and the constructor keywords); the JSON file has the
    weights' name with the suffix ".json". Both files are written atomically.
    """
    path = pathlib.Path(path)
    hyperparams = dict(hyperparams)
    size = "stencil_size" if hyperparams.get("kind") == "density" else "n"
    if "kind" not in hyperparams or size not in hyperparams:
        raise ValueError(
            f"`hyperparams` must name at least the model's `kind` and `{size}`, the "
            "arguments that `make_model` needs to rebuild it."
        )
    leaves = [x for x in jax.tree.leaves(model) if eqx.is_array(x)]
    hyperparams.setdefault("dtype", str(leaves[0].dtype) if leaves else "float32")
    try:
        text = json.dumps(hyperparams, indent=2, sort_keys=True)
    except TypeError as error:
        raise ValueError(
            f"The hyperparameters cannot be stored as JSON ({error}); use named "
            "activations and plain numbers, strings and lists."
        ) from None
    _atomic_write(_hyperparameter_path(path), lambda s: s.write(text + "\n"), "w")
    _atomic_write(path, lambda s: eqx.tree_serialise_leaves(s, model), "wb")


def load_model(path) -> eqx.Module:
    """Rebuild a model saved by `save_model` from its weights and hyperparameters."""
    path = pathlib.Path(path)
    json_path = _hyperparameter_path(path)
    for required in (path, json_path):
        if not required.exists():
            raise FileNotFoundError(
                f"The model file {required} does not exist; `save_model` writes the "
                "weights and a JSON file of hyperparameters beside them."
            )
    hyperparams = json.loads(json_path.read_text())
    skeleton = make_model(**hyperparams)
    return eqx.tree_deserialise_leaves(path, skeleton)
