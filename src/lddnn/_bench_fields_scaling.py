"""How the field accelerations scale with the number of sites, against the dense
published formula.

A learned density (a random-initialised 2 × 64 softplus MLP over a neighbourhood's
φ and φ̇, plus ½ φ̇_centre²) on 1-D chains of 2^10 … 2^20 sites and 2-D square grids
of 32² … 1024² sites (star stencil), float32, timed after compilation.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lddnn import field, lattice
from lddnn.bench import _machine, interleaved_medians, reference_accelerations
from lddnn.nn import LocalDensity

__all__ = ["field_scaling"]

SIZES_1D = tuple(2**p for p in range(10, 21))
SIDES_2D = (32, 64, 128, 256, 512, 1024)
DENSE_SIZES = (64, 128, 256, 512, 1024)
# The fitted exponents use the sizes from 2^12 on, where fixed per-call costs
# (dispatch, the host call of the band solve) no longer dominate.
FIT_FROM = 2**12


def _density(stencil_size: int, key) -> LocalDensity:
    """A freshly initialised learned density with the kinetic term ½ φ̇_centre².

    That term keeps the velocity Hessian positive definite: a random MLP's own
    curvature in φ̇ is small (summed off-diagonal |M_ab| ≲ 0.02 per row at
    initialisation), so with α = 1 every row of M is diagonally dominant;
    `_mass_margin` checks this at each size.
    """
    return LocalDensity(
        stencil_size, width=64, depth=2, activation="softplus", kinetic=1.0, key=key
    )


def _state(lat: lattice.Lattice, seed: int = 0):
    phi = jax.random.normal(jax.random.key(seed), lat.shape, jnp.float32)
    phid = jax.random.normal(jax.random.key(seed + 1), lat.shape, jnp.float32)
    return phi, phid


def _mass_margin(density, lat, phi, phid) -> float:
    """min over rows of M_aa − Σ_{b≠a} |M_ab|. Positive means M (symmetric) is
    strictly diagonally dominant with a positive diagonal, hence positive definite
    (Gershgorin)."""

    @jax.jit
    def margin(phi, phid):
        diagonals = field.mass_operator(density, lat, phi, phid).diagonals()
        centre = (0,) * lat.ndim
        off = sum(jnp.abs(v) for d, v in diagonals.items() if d != centre)
        return jnp.min(diagonals[centre] - off)

    return float(margin(phi, phid))


def _median_ms(function, *args, budget_s: float = 3.0, most: int = 15) -> float:
    """Median after compilation, with as many calls as fit in `budget_s` (≥ 3)."""
    jax.block_until_ready(function(*args))
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    once = time.perf_counter() - start
    repeats = int(np.clip(budget_s / max(once, 1e-9), 3, most))
    return interleaved_medians({"f": function}, *args, rounds=1, repeats=repeats)["f"]


def _accelerations(density, lat):
    return jax.jit(lambda phi, phid: field.field_accelerations(density, lat, phi, phid))


def _dense(density, lat):
    total = field.dense_reference(density, lat)
    return jax.jit(lambda q, qd: reference_accelerations(total, q, qd))


def _fit_exponent(sizes, ms) -> float:
    """Least-squares slope of log ms against log N over the sizes ≥ FIT_FROM."""
    chosen = [(n, t) for n, t in zip(sizes, ms) if n >= FIT_FROM]
    logs = np.log([n for n, _ in chosen]), np.log([t for _, t in chosen])
    return float(np.polyfit(*logs, 1)[0])


def _flops_per_site(density, lat_small) -> float:
    """FLOPs per site of one acceleration from XLA's cost analysis, on a lattice
    small enough that the site terms run as one vectorised pass (a batched loop
    would be counted once, not once per batch); the band solve runs on the host
    and is not counted (O(N w²) with band width w ≤ 5, negligible here)."""
    phi, phid = _state(lat_small)
    compiled = _accelerations(density, lat_small).lower(phi, phid).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis["flops"]) / lat_small.size


def _matmul_peak() -> float:
    """FLOP/s of a 2048 × 2048 float32 matrix product, the machine's practical peak."""
    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    ms = interleaved_medians(
        {"dot": jax.jit(lambda x: jnp.dot(x, x))}, a, rounds=1, repeats=5
    )["dot"]
    return 2 * n**3 / (ms * 1e-3)


def field_scaling(seed: int = 0) -> dict:
    """Time per field acceleration against the number of sites (1-D and 2-D), the
    dense published formula on small chains, and achieved FLOP/s."""
    key = jax.random.key(seed)
    density_1d = _density(3, key)
    density_2d = _density(5, key)

    ms, margins = [], []
    dense_ms = []
    for n in SIZES_1D:
        lat = lattice.chain(n)
        phi, phid = _state(lat, seed)
        margins.append(_mass_margin(density_1d, lat, phi, phid))
        ms.append(_median_ms(_accelerations(density_1d, lat), phi, phid))
    for n in DENSE_SIZES:
        lat = lattice.chain(n)
        phi, phid = _state(lat, seed)
        dense_ms.append(
            _median_ms(_dense(density_1d, lat), phi, phid, budget_s=6.0, most=5)
        )

    ms_2d = []
    for side in SIDES_2D:
        lat = lattice.grid((side, side), stencil="star")
        phi, phid = _state(lat, seed)
        margins.append(_mass_margin(density_2d, lat, phi, phid))
        ms_2d.append(_median_ms(_accelerations(density_2d, lat), phi, phid))

    flops_site = _flops_per_site(density_1d, lattice.chain(128))
    peak = _matmul_peak()
    largest = SIZES_1D[-1]
    flops_per_second = flops_site * largest / (ms[-1] * 1e-3)
    at_1024 = SIZES_1D.index(1024)
    return {
        "benchmark": "field-scaling",
        "config": "LocalDensity 2x64 softplus, kinetic 0.5*phid_centre^2, float32, "
        "1-D periodic chains (banded solve), 2-D periodic star grids (CG)",
        "sizes": list(SIZES_1D),
        "ms": ms,
        "sizes_2d": [side * side for side in SIDES_2D],
        "ms_2d": ms_2d,
        "exponent": _fit_exponent(SIZES_1D, ms),
        "exponent_2d": _fit_exponent([s * s for s in SIDES_2D], ms_2d),
        "dense_sizes": list(DENSE_SIZES),
        "dense_ms": dense_ms,
        "speedup_vs_dense_at_1024": dense_ms[DENSE_SIZES.index(1024)] / ms[at_1024],
        "seconds_at_2_20": ms[-1] * 1e-3,
        "min_mass_dominance_margin": min(margins),
        "flops_per_site": flops_site,
        "flops_counted_by": "XLA cost analysis of one acceleration on 128 sites, "
        "per site; host band solve not included",
        "flops_per_second": flops_per_second,
        "matmul_peak_flops_per_second": peak,
        "fraction_of_peak": flops_per_second / peak,
        "goal_exponent": 1.1,
        "goal_speedup_vs_dense_at_1024": 1000.0,
        "goal_seconds_at_2_20": 5.0,
        **_machine(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(field_scaling(), indent=2))
