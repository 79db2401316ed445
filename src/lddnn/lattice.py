"""Lattices and graphs, and the total Lagrangian of a field built from a local density.

A field φ lives on N sites: the points of a 1-D or 2-D grid (periodic or with fixed
boundaries) or the nodes of a graph. Each site i has a neighbourhood I_i, and the
field's Lagrangian is one local density summed over all neighbourhoods,

    L(φ, φ̇) = Σ_i ℓ(φ_{I_i}, φ̇_{I_i}, t, params).

`Lattice.gather` cuts the field into those neighbourhoods, shape (N, k, ...), and
`Lattice.scatter` adds per-neighbourhood values back onto the sites (its exact
transpose). Everything else, the sparse velocity Hessian and the accelerations in
O(N), is built from these two operations (`lddnn.field`).

Fixed (Dirichlet) boundaries hold the field at zero outside the grid: a neighbour
that falls off the grid reads 0 and does not move. On a graph, a node with fewer
neighbours than the largest degree has the missing places of its neighbourhood read 0
in the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Density = Callable[..., jax.Array]
Boundary = Literal["periodic", "fixed"]

__all__ = ["Lattice", "chain", "graph", "grid"]


def _stencil_offsets(ndim: int, radius: int, stencil: str) -> tuple[tuple[int, ...], ...]:
    """Offsets within `radius`, in lexicographic order: reversing the order maps
    every offset o to −o (the stencil is point-symmetric)."""
    span = range(-radius, radius + 1)
    offsets = itertools.product(span, repeat=ndim)
    if stencil == "star":
        offsets = (o for o in offsets if sum(map(abs, o)) <= radius)
    return tuple(sorted(offsets))


class Lattice(eqx.Module):
    """Sites, their neighbourhoods and the geometry of a grid or a graph.

    Build one with `chain`, `grid` or `graph`. A field on the lattice is an array of
    shape `shape` (a scalar field) or `shape + (c,)` (c components per site).

    Attributes:
        shape: the grid's shape, or (N,) for a graph.
        spacing: the grid spacing per axis (1 for a graph).
        periodic: per axis, whether the grid wraps around (False for a graph).
        offsets: the stencil of a grid, offsets in lexicographic order; empty for
            a graph.
        neighbours: a graph's neighbourhoods, (N, k) site indices, the node first,
            padded with N (a site that reads 0); None for a grid.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    spacing: tuple[float, ...] = eqx.field(static=True)
    periodic: tuple[bool, ...] = eqx.field(static=True)
    offsets: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    neighbours: jax.Array | None = None

    @property
    def size(self) -> int:
        """The number of sites N."""
        return int(np.prod(self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_graph(self) -> bool:
        return self.neighbours is not None

    @property
    def stencil_size(self) -> int:
        """The number k of sites in a neighbourhood."""
        return self.neighbours.shape[1] if self.is_graph else len(self.offsets)

    @property
    def radius(self) -> int:
        """How far a neighbourhood reaches along an axis (grids)."""
        return max((max(map(abs, o)) for o in self.offsets), default=0)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description from which `from_description` rebuilds it."""
        if self.is_graph:
            rows = np.asarray(self.neighbours)
            adjacency = [[int(j) for j in row[1:] if j < self.size] for row in rows]
            return {"kind": "graph", "adjacency": adjacency}
        return {
            "kind": "grid",
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "boundary": ["periodic" if p else "fixed" for p in self.periodic],
            "offsets": [list(o) for o in self.offsets],
        }

    # ------------------------------------------------------------------ checking

    def field_shape(self, phi) -> tuple[int, ...]:
        """The component shape of a field on this lattice, () for a scalar field;
        refuses arrays whose leading axes are not the lattice's shape."""
        shape = tuple(jnp.shape(phi))
        if shape[: self.ndim] != self.shape or len(shape) > self.ndim + 1:
            raise ValueError(
                f"The field has shape {shape}, but this lattice has shape "
                f"{self.shape}; a field must have shape {self.shape} (one value per "
                f"site) or {self.shape + ('c',)} (c components per site)."
            )
        return shape[self.ndim :]

    # ------------------------------------------------------------- gather/scatter

    def gather(self, phi: jax.Array) -> jax.Array:
        """The field on every neighbourhood: (*shape, *rest) or (N, *rest) to
        (N, k, *rest), neighbours in the lattice's stencil order."""
        rest = phi.shape[self.ndim :] if phi.shape[: self.ndim] == self.shape else (
            phi.shape[1:]
        )
        flat = jnp.reshape(phi, (self.size,) + rest)
        if self.is_graph:
            padded = jnp.concatenate([flat, jnp.zeros((1,) + rest, flat.dtype)])
            return padded[self.neighbours]
        return self._gather_grid(jnp.reshape(flat, self.shape + rest), rest)

    def _gather_grid(self, phi: jax.Array, rest: tuple[int, ...]) -> jax.Array:
        r = self.radius
        padded = phi
        for axis, periodic in enumerate(self.periodic):
            widths = [(0, 0)] * phi.ndim
            widths[axis] = (r, r)
            padded = jnp.pad(padded, widths, mode="wrap" if periodic else "constant")
        parts = []
        for offset in self.offsets:
            window = tuple(
                slice(r + o, r + o + n) for o, n in zip(offset, self.shape)
            )
            parts.append(padded[window])
        stacked = jnp.stack(parts, axis=self.ndim)
        return jnp.reshape(stacked, (self.size, len(self.offsets)) + rest)

    def scatter(self, local: jax.Array) -> jax.Array:
        """The transpose of `gather`: (N, k, *rest) to (N, *rest), each
        neighbourhood's values added onto the sites they belong to."""
        rest = local.shape[2:]
        template = jax.ShapeDtypeStruct((self.size,) + rest, local.dtype)
        (sites,) = jax.linear_transpose(self.gather, template)(local)
        return sites

    # ------------------------------------------------------------------ colouring

    def colouring(self) -> np.ndarray:
        """A colour per site, (N,) integers from 0, such that sites of one colour have
        disjoint neighbourhoods (so one Hessian-vector product with a seed that is 1
        on all sites of a colour recovers all of their velocity-Hessian columns)."""
        if not self.is_graph:
            regular = self._grid_colouring()
            if regular is not None:
                return regular
        return _greedy_colouring(self._neighbour_lists())

    def _grid_colouring(self) -> np.ndarray | None:
        # Neighbourhoods of sites i and j overlap when |i − j| ≤ 2r along every axis,
        # so colouring by (i mod (2r + 1)) per axis works unless a periodic axis does
        # not divide evenly.
        period = 2 * self.radius + 1
        if any(p and n % period for n, p in zip(self.shape, self.periodic)):
            return None
        index = np.indices(self.shape).reshape(self.ndim, -1) % period
        weights = period ** np.arange(self.ndim)[::-1]
        return (weights @ index).astype(np.int32)

    def _neighbour_lists(self) -> np.ndarray:
        """(N, k) site indices of each neighbourhood; N marks a missing site."""
        if self.is_graph:
            return np.asarray(self.neighbours)
        sites = np.arange(self.size, dtype=np.int64).reshape(self.shape)
        lists = self.gather(jnp.asarray(sites + 1))  # 0 now marks a missing site
        lists = np.asarray(lists) - 1
        return np.where(lists < 0, self.size, lists)


def _greedy_colouring(lists: np.ndarray) -> np.ndarray:
    """Greedy colouring of the graph in which two sites conflict when their
    neighbourhoods share a site."""
    count = lists.shape[0]
    members: list[list[int]] = [[] for _ in range(count + 1)]
    for site, row in enumerate(lists):
        for j in row:
            members[j].append(site)
    colours = np.full(count, -1, dtype=np.int32)
    for site, row in enumerate(lists):
        taken = {colours[other] for j in row if j < count for other in members[j]}
        colour = 0
        while colour in taken:
            colour += 1
        colours[site] = colour
    return colours


# ------------------------------------------------------------------ constructors


def _check_boundary(boundary, ndim: int) -> tuple[bool, ...]:
    values = (boundary,) * ndim if isinstance(boundary, str) else tuple(boundary)
    if len(values) != ndim or any(b not in ("periodic", "fixed") for b in values):
        raise ValueError(
            f"`boundary` is {boundary!r}; use 'periodic' or 'fixed', or one of them "
            f"per axis ({ndim} in all)."
        )
    return tuple(b == "periodic" for b in values)


def grid(
    shape: int | Sequence[int],
    *,
    spacing: float | Sequence[float] = 1.0,
    boundary: Boundary | Sequence[Boundary] = "periodic",
    stencil: Literal["star", "box"] = "star",
    radius: int = 1,
) -> Lattice:
    """A regular grid of `shape` sites with neighbourhoods of the given stencil.

    Arguments:
        shape: sites per axis, e.g. 256 or (64, 64).
        spacing: the grid spacing Δx, one for all axes or one per axis.
        boundary: "periodic" (wrap around) or "fixed" (the field is held at 0
            outside the grid), for all axes or per axis.
        stencil: "star", the site and its neighbours along the axes within `radius`
            (in 2-D with radius 1: the 4 nearest neighbours), or "box", every site
            within `radius` along all axes at once (in 2-D: the 8 neighbours).
        radius: how far the neighbourhood reaches along an axis.
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"`shape` is {shape}; give at least one positive size.")
    if stencil not in ("star", "box"):
        raise ValueError(f"`stencil` is {stencil!r}; use 'star' or 'box'.")
    if not isinstance(radius, (int, np.integer)) or radius < 1:
        raise ValueError(f"`radius` is {radius!r}; use a positive integer.")
    periodic = _check_boundary(boundary, len(shape))
    for n, wraps in zip(shape, periodic):
        if wraps and n < 2 * radius + 1:
            raise ValueError(
                f"A periodic axis of {n} sites is shorter than a neighbourhood "
                f"(2·radius + 1 = {2 * radius + 1}); use more sites or a fixed "
                "boundary."
            )
    spacing = (spacing,) * len(shape) if np.ndim(spacing) == 0 else tuple(spacing)
    if len(spacing) != len(shape) or not all(float(h) > 0 for h in spacing):
        raise ValueError(
            f"`spacing` is {spacing}; give one positive spacing, or one per axis."
        )
    offsets = _stencil_offsets(len(shape), int(radius), stencil)
    return Lattice(shape, tuple(map(float, spacing)), periodic, offsets)


def chain(
    n: int,
    *,
    spacing: float = 1.0,
    boundary: Boundary = "periodic",
    radius: int = 1,
) -> Lattice:
    """A 1-D grid of n sites; each neighbourhood is {i − r, …, i + r}."""
    return grid(n, spacing=spacing, boundary=boundary, radius=radius)


def graph(adjacency: Sequence[Sequence[int]]) -> Lattice:
    """A graph from its adjacency list: `adjacency[i]` lists the neighbours of node
    i. Each neighbourhood is the node followed by its neighbours in the order given;
    edges are used as listed (give both directions for an undirected graph)."""
    count = len(adjacency)
    if count == 0:
        raise ValueError("The adjacency list is empty; a graph needs at least one node.")
    rows = []
    for node, listed in enumerate(adjacency):
        listed = [int(j) for j in listed]
        bad = [j for j in listed if not 0 <= j < count]
        if bad:
            raise ValueError(
                f"Node {node} lists neighbours {bad}, outside 0 … {count - 1}; every "
                "neighbour must be the index of a node of the graph."
            )
        if node in listed or len(set(listed)) != len(listed):
            raise ValueError(
                f"Node {node} lists itself or a neighbour twice ({listed}); list "
                "each other node at most once (the node itself is always included)."
            )
        rows.append([node] + listed)
    width = max(len(row) for row in rows)
    table = np.full((count, width), count, dtype=np.int32)
    for node, row in enumerate(rows):
        table[node, : len(row)] = row
    return Lattice((count,), (1.0,), (False,), (), jnp.asarray(table))


def from_description(description: dict[str, Any]) -> Lattice:
    """Rebuild a lattice from `Lattice.describe()`."""
    if description.get("kind") == "graph":
        return graph(description["adjacency"])
    offsets = tuple(tuple(o) for o in description["offsets"])
    lattice = Lattice(
        tuple(description["shape"]),
        tuple(description["spacing"]),
        tuple(b == "periodic" for b in description["boundary"]),
        offsets,
    )
    return lattice
