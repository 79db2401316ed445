"""Fields on lattices: the O(N) Euler–Lagrange solve against the dense one, the
reference fields against hand-derived equations, dispersion relations, the
sine-Gordon kink and energy conservation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lddnn
from lddnn import systems
from lddnn.field import (
    dense_reference,
    field_accelerations,
    field_energy,
    mass_operator,
)
from lddnn.lattice import chain, graph, grid

FIELDS = systems.field_names()
# Small grids: every check here holds site by site, so size adds nothing.
SMALL = {name: {"sites": 8 if name == "membrane2d" else 16} for name in FIELDS}
# One batch size, time grid and tolerance for every rollout of a field, so that the
# dispersion and energy tests share one compiled solve per system.
BATCH, SAVES, TIGHT = 2, 21, 1e-12


# ------------------------------------------------------------------ the O(N) solve


def coupled_density(centre):
    """A nonlinear density with velocity coupling between neighbours (M is not
    diagonal and depends on φ), a gyroscopic term (C ≠ 0) and explicit time; for
    one component (k,) or several (k, c). `centre` is the site's place in its
    neighbourhood. M stays positive definite: its diagonal is at least 1 and the
    couplings add at most 0.05 · 2(k − 1) < 1 per row for k ≤ 9."""

    def density(phi, phid, t, params):
        u, v = phi, phid
        uc, vc = u[centre], v[centre]
        others = jnp.arange(u.shape[0]) != centre
        mask = others.reshape((-1,) + (1,) * (u.ndim - 1))
        kinetic = 0.5 * jnp.sum((1 + 0.3 * jnp.tanh(uc) ** 2) * vc**2)
        coupling = 0.05 * jnp.sum(mask * jnp.cos(u) * v * vc)
        gyroscopic = 0.2 * jnp.sin(t) * jnp.sum(uc * vc) + 0.1 * jnp.sum(
            mask * jnp.sin(u) * vc
        )
        potential = params["k"] * jnp.sum(mask * (u - uc) ** 2) + 0.1 * jnp.sum(uc**4)
        if u.ndim == 2:  # components exchange energy through the site's velocity
            kinetic = kinetic + 0.1 * vc[0] * vc[1] * jnp.cos(uc[1])
        return kinetic + coupling + gyroscopic - potential

    return density


LATTICES = {
    "chain-periodic": (chain(7, spacing=0.5), None),
    "chain-fixed-two-components": (chain(6, boundary="fixed"), 2),
    "grid-star-two-components": (grid((3, 4), boundary=("periodic", "fixed")), 2),
    "grid-box-fixed": (grid((4, 3), stencil="box", boundary="fixed"), None),
    "graph": (graph([[1, 2], [0, 2, 3], [0, 1], [1, 4], [3], []]), None),
}
# Every solver meets a 1-D or a 2-D grid or a graph, with one or two components;
# each Krylov method adds about a second of compilation, so each appears once or
# twice.
SOLVERS = {
    "chain-periodic": ("banded",),
    "chain-fixed-two-components": ("banded", "cg"),
    "grid-star-two-components": ("gmres",),
    "grid-box-fixed": ("cg",),
    "graph": ("bicgstab",),
}


def random_state(lattice, components, key):
    shape = lattice.shape + (() if components is None else (components,))
    phi, phid = jax.random.normal(key, (2,) + shape)
    return phi, phid


def density_of(lattice):
    # A graph lists the node first; a grid's site is the middle of its stencil.
    return coupled_density(0 if lattice.is_graph else lattice.stencil_size // 2)


@pytest.mark.parametrize("name", list(LATTICES))
def test_field_accelerations_and_mass_equal_the_dense_ones(name):
    lattice, components = LATTICES[name]
    density, params, t = density_of(lattice), {"k": 0.7}, 0.3
    dense = dense_reference(density, lattice, components)

    # One compiled function per lattice: eager evaluation of these small solves
    # would cost far more than compiling them.
    @jax.jit
    def solves(phi, phid):
        fast = {
            solver: field_accelerations(
                density, lattice, phi, phid, t, params, solver=solver
            )
            for solver in SOLVERS[name]
        }
        q, qd = phi.ravel(), phid.ravel()
        mass = mass_operator(density, lattice, phi, phid, t, params).to_dense()
        return (
            fast,
            lddnn.accelerations(dense, q, qd, t, params),
            mass,
            lddnn.mass_matrix(dense, q, qd, t, params),
        )

    phi, phid = random_state(lattice, components, jax.random.key(1))
    fast, reference, mass, reference_mass = solves(phi, phid)
    scale = np.abs(reference).max()
    for solver, phidd in fast.items():
        assert phidd.shape == phi.shape, solver
        np.testing.assert_allclose(
            phidd.ravel(), reference, rtol=0, atol=1e-10 * scale, err_msg=solver
        )
    # The coupling makes M non-diagonal, so this compares the sparsity too.
    assert np.count_nonzero(np.abs(reference_mass) > 1e-3) > 2 * reference.size
    np.testing.assert_allclose(mass, reference_mass, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(LATTICES))
def test_scatter_is_the_transpose_of_gather(name):
    lattice, components = LATTICES[name]
    rest = () if components is None else (components,)
    x_key, y_key = jax.random.split(jax.random.key(3))
    x = jax.random.normal(x_key, lattice.shape + rest)
    y = jax.random.normal(y_key, (lattice.size, lattice.stencil_size) + rest)

    @jax.jit
    def products(x, y):
        scattered = lattice.scatter(y)
        assert scattered.shape == (lattice.size,) + rest
        return jnp.vdot(lattice.gather(x), y), jnp.vdot(x.ravel(), scattered.ravel())

    gathered_y, x_scattered = products(x, y)
    np.testing.assert_allclose(gathered_y, x_scattered, rtol=1e-13)


def neighbourhoods(lattice):
    """Each site's neighbourhood as a set of site indices (missing sites left out)."""
    sites = np.arange(lattice.size).reshape(lattice.shape)
    lists = np.asarray(lattice.gather(jnp.asarray(sites + 1))) - 1  # -1: missing
    if lattice.is_graph:
        lists = np.where(lists >= lattice.size, -1, lists)
    return [set(row[row >= 0]) for row in lists]


@pytest.mark.parametrize(
    "lattice",
    [lattice for lattice, _ in LATTICES.values()] + [chain(8), grid((5, 7))],
    ids=list(LATTICES) + ["chain-8-greedy", "grid-5x7-greedy"],
)
def test_colouring_gives_disjoint_neighbourhoods(lattice):
    colours = lattice.colouring()
    assert colours.shape == (lattice.size,) and colours.min() == 0
    sets = neighbourhoods(lattice)
    for colour in np.unique(colours):
        members = np.flatnonzero(colours == colour)
        union = set().union(*(sets[i] for i in members))
        assert len(union) == sum(len(sets[i]) for i in members)


def test_bad_input_is_refused_with_clear_messages():
    with pytest.raises(ValueError, match=r"Node 1 lists neighbours \[5\], outside 0"):
        graph([[1], [0, 5], []])
    lattice = chain(8)
    density = coupled_density(1)
    with pytest.raises(ValueError, match=r"shape \(9,\), but this lattice has shape"):
        field_accelerations(density, lattice, jnp.zeros(9), jnp.zeros(9), 0.0, {"k": 1})
    with pytest.raises(ValueError, match="`phid` has shape"):
        field_accelerations(density, lattice, jnp.zeros(8), jnp.zeros(7), 0.0, {"k": 1})
    with pytest.raises(ValueError, match="solver='banded' works on 1-D grids only"):
        phi = jnp.zeros((4, 4))
        field_accelerations(
            coupled_density(2), grid((4, 4)), phi, phi, 0.0, {"k": 1}, solver="banded"
        )


# --------------------------------------------------------------- reference fields


def test_registry_keeps_fields_apart_from_mechanical_systems():
    assert FIELDS == [
        "wave1d",
        "wave1d-central",
        "klein-gordon",
        "sine-gordon",
        "phi4",
        "membrane2d",
    ]
    assert not set(FIELDS) & set(systems.names())
    assert systems.get("sine-gordon") is systems.SINE_GORDON
    with pytest.raises(ValueError, match="Unknown system 'kdv'.*sine-gordon"):
        systems.get("kdv")
    with pytest.raises(ValueError, match="simulate_field"):
        systems.simulate("wave1d", jax.random.key(0), 1, jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="whole number"):
        systems.WAVE_1D.lattice(systems.WAVE_1D.params(sites=10.5))
    with pytest.raises(ValueError, match="no parameter 'mu'"):
        systems.WAVE_1D.params(mu=1.0)


@pytest.mark.parametrize("name", FIELDS)
def test_density_reproduces_hand_derived_equations(name):
    keys = jax.random.split(jax.random.key(4), 3)
    for boundary in ("periodic", "fixed"):
        system = systems.get(name).with_boundary(boundary)
        params = system.params(**SMALL[name])
        lattice = system.lattice(params)

        @jax.jit
        @jax.vmap
        def both(key):
            phi, phid = system.sample_initial_state(key, params)
            derived = field_accelerations(
                system.density, lattice, phi, phid, 0.0, params
            )
            return derived, system.equations_of_motion(phi, phid, 0.0, params)

        derived, by_hand = both(keys)
        assert derived.shape == (3,) + lattice.shape
        scale = np.abs(by_hand).max()
        np.testing.assert_allclose(
            derived, by_hand, rtol=0, atol=1e-12 * scale, err_msg=boundary
        )


def test_sampled_states_are_smooth_seeded_and_hold_fixed_boundaries():
    system = systems.SINE_GORDON
    params = system.params(sites=64)
    phi, phid = system.sample_initial_state(jax.random.key(5), params)
    np.testing.assert_allclose(np.sqrt(np.mean(phi**2)), params["amplitude"])
    # Correlated over 2 units = 8 sites: neighbours differ far less than the field.
    assert np.std(np.diff(phi)) < 0.3 * np.std(phi)
    again, _ = system.sample_initial_state(jax.random.key(5), params)
    np.testing.assert_array_equal(again, phi)
    fixed = system.with_boundary("fixed")
    phi, _ = fixed.sample_initial_state(jax.random.key(5), params)
    # Sine modes vanish one spacing past the ends: the ends are small.
    assert abs(phi[0]) < 0.3 and abs(phi[-1]) < 0.3


def plane_wave(lattice, wavevector, frequency, t):
    """φ = cos(k·x − ωt) and φ̇ = ω sin(k·x − ωt) on the sites x = i Δx."""
    axes = [np.arange(n) * h for n, h in zip(lattice.shape, lattice.spacing)]
    phase = sum(
        k * x for k, x in zip(wavevector, np.meshgrid(*axes, indexing="ij"))
    ) - frequency * t
    return np.cos(phase), frequency * np.sin(phase)


def discrete_frequency(name, params, wavevector):
    """ω(k) derived by hand from the semi-discrete equations with φ ∝ e^{i(kx − ωt)}:
    forward differences give ω² = Σ_axes (4c²/Δx²) sin²(kΔx/2) + μ², the central
    difference ω² = c² sin²(kΔx)/Δx²."""
    c, h = params["c"], params["spacing"]
    k = np.asarray(wavevector)
    if name == "wave1d-central":
        return c * abs(np.sin(k[0] * h)) / h
    squared = np.sum(4 * c**2 / h**2 * np.sin(k * h / 2) ** 2)
    return np.sqrt(squared + params.get("mu", 0.0) ** 2)


@pytest.mark.parametrize(
    "name", ["wave1d", "wave1d-central", "klein-gordon", "membrane2d"]
)
def test_plane_waves_follow_the_discrete_dispersion_relation(name):
    system = systems.get(name)
    params = system.params(**SMALL[name])
    lattice = system.lattice(params)
    length = lattice.shape[0] * lattice.spacing[0]
    # Two periodic wavevectors per system, the second near the grid's resolution
    # limit, where the discrete ω(k) is far from the continuum c|k|.
    modes = [(1, 0), (3, 2)] if lattice.ndim == 2 else [(1,), (5,)]
    wavevectors = [2 * np.pi * np.asarray(m[: lattice.ndim]) / length for m in modes]
    frequencies = [discrete_frequency(name, params, k) for k in wavevectors]
    starts = [plane_wave(lattice, k, w, 0.0) for k, w in zip(wavevectors, frequencies)]
    phi0, phid0 = (np.stack(parts) for parts in zip(*starts))
    t = np.linspace(0.0, 2 * np.pi / min(frequencies), SAVES)  # the slower period
    phi, _ = systems.rollout_field(
        system, phi0, phid0, t, params, rtol=TIGHT, atol=TIGHT
    )
    for b, (k, w) in enumerate(zip(wavevectors, frequencies)):
        expected = np.stack([plane_wave(lattice, k, w, s)[0] for s in t])
        np.testing.assert_allclose(phi[b], expected, rtol=0, atol=1e-8)
        continuum = np.sqrt(params["c"] ** 2 * k @ k + params.get("mu", 0.0) ** 2)
        assert abs(continuum - w) > 1e-3 * w  # the check can tell them apart


@pytest.mark.parametrize("name", FIELDS)
def test_ground_truth_conserves_energy(name):
    system = systems.get(name)
    params = SMALL[name]
    data = systems.simulate_field(
        system,
        jax.random.key(6),
        BATCH,
        np.linspace(0.0, 4.0, SAVES),
        params,
        rtol=TIGHT,
        atol=TIGHT,
    )
    assert data.phi.shape == (BATCH, SAVES) + data.lattice.shape
    assert data.phi.dtype == np.float64 and data.system == name
    per_state = lambda u, v: field_energy(
        system.density, data.lattice, u, v, 0.0, data.params
    )
    energy = jax.jit(jax.vmap(jax.vmap(per_state)))(data.phi, data.phid)
    drift = np.abs(energy - energy[:, :1]) / system.energy_scale(data.params)
    assert drift.max() < 1e-8


def test_density_dynamics_match_the_hand_derived_ones():
    system = systems.SINE_GORDON
    t = np.array([0.0, 0.5])
    run = lambda dynamics: systems.simulate_field(
        system, jax.random.key(8), 1, t, {"sites": 8}, dynamics=dynamics
    )
    by_hand, derived = run("equations"), run("density")
    np.testing.assert_allclose(derived.phi, by_hand.phi, rtol=0, atol=1e-9)


KINK_SITES = 300  # one grid size for both spacings: one compiled solve


def kink_error(spacing, velocity, duration):
    """Max error of a lattice kink–antikink pair at t = `duration` against the
    travelling continuum kinks, on a periodic grid of 300 sites."""
    system = systems.SINE_GORDON
    params = system.params(sites=KINK_SITES, spacing=spacing)
    length = KINK_SITES * spacing
    x = np.arange(KINK_SITES) * spacing

    def pair(t):
        # A kink and an antikink half the domain (at least 15 units) apart, with
        # their periodic images: a lone pair would put a kink in the field at the
        # seam of the domain, where the tails of its images are missing. Each kink
        # then feels the others' tails 4 e^{−15γ} < 1e-7, and an attraction as small.
        phi, phid = np.zeros_like(x), np.zeros_like(x)
        for shift in (-length, 0.0, length):
            for charge, centre in ((1, length / 4), (-1, 3 * length / 4)):
                part = systems.sine_gordon_kink(
                    x, t, velocity=velocity, position=centre + shift, charge=charge
                )
                phi, phid = phi + part[0], phid + part[1]
        return phi, phid

    phi0, phid0 = pair(0.0)
    t = np.array([0.0, duration])
    phi, _ = systems.rollout_field(
        system, phi0, phid0, t, params, rtol=1e-10, atol=1e-10
    )
    return np.abs(phi[-1] - pair(duration)[0]).max()


def test_sine_gordon_kink_travels_at_its_speed_and_keeps_its_shape():
    velocity, duration = 0.6, 5.0  # the kink moves 3 units, about 2.4 widths
    coarse = kink_error(0.2, velocity, duration)
    fine = kink_error(0.1, velocity, duration)
    # The 3-point Laplacian errs by (Δx²/12) ∂⁴φ on the kink, so the lattice kink
    # differs from the continuum one by O(Δx²): halving Δx must quarter the error,
    # and at Δx = 0.1 it is a small fraction of the kink's height 2π.
    assert 3.5 < coarse / fine < 4.5
    assert fine < 2e-3 * 2 * np.pi
