"""The Hopfield core (nncli/models/hopfield.py): weights by hand, the async energy descent flip by flip,
fixed points, sync 2-cycles, capacities against the literature, the modern rule on MNIST, outcomes, probes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nncli.models.hopfield import (
    OUTCOMES,
    RULES,
    HopfieldNetwork,
    Recall,
    capacity_curve,
    fixed_points,
    learn,
    make_probes,
    outcomes,
    overlaps,
    theoretical_capacity,
)

REPO = Path(__file__).resolve().parent.parent
MNIST = REPO / "datasets" / "mnist" / "train-images-idx3-ubyte.gz"
BIPOLAR = ("hebbian", "storkey", "pinv")


def random_patterns(rng, p, n):
    return np.where(rng.random((p, n)) < 0.5, -1.0, 1.0)


# -- weights by hand --------------------------------------------------------------------------------------------------
# Pair A: orthogonal patterns. Hebbian: (ξ1_iξ1_j + ξ2_iξ2_j)/4 = 1/2 where ξ2_i = ξ2_j, else 0; pinv is the
# same matrix (XXᵀ = 4I, so Xᵀ(XXᵀ)⁻¹X = XᵀX/4). Storkey: after ξ1, W = 1/4 everywhere; for ξ2 the fields
# h_i = Σ_k ξ2_k/4 = 0, so h_ij = −w_ii ξ_i − w_ij ξ_j = −(ξ_i + ξ_j)/4 and Δw_ij = (ξ_iξ_j + (ξ_i + ξ_j)²/4)/4:
# 1/2 for equal signs (w = 3/4), −1/4 for opposite ones (w = 0); diagonal h_ii = −ξ_i/4, Δw_ii = (1 + 1/2)/4 = 3/8
# (w_ii = 5/8).
PAIR_A = np.array([[1, 1, 1, 1], [1, 1, -1, -1]], float)
A_HEBBIAN = np.array([[1 / 2, 1 / 2, 0, 0], [1 / 2, 1 / 2, 0, 0], [0, 0, 1 / 2, 1 / 2], [0, 0, 1 / 2, 1 / 2]])
A_STORKEY = np.array([[5 / 8, 3 / 4, 0, 0], [3 / 4, 5 / 8, 0, 0], [0, 0, 5 / 8, 3 / 4], [0, 0, 3 / 4, 5 / 8]])
A_PINV = A_HEBBIAN
# Pair B: overlap 2. Hebbian: 1/2 among neurons 1, 3, 4 (and on the diagonal), 0 between neuron 2 and the others.
# pinv: (XXᵀ)⁻¹ = [[4, −2], [−2, 4]]/12, w_ij = (4ξ1_iξ1_j − 2ξ1_iξ2_j − 2ξ2_iξ1_j + 4ξ2_iξ2_j)/12: 1/3 among
# 1, 3, 4, 0 with neuron 2, w_22 = 12/12 = 1 (a rank-2 projector: trace 2). Storkey: h_i = (1 − 1 + 1 + 1)/4 = 1/2;
# h_13 = 1/2 − 1/4 − 1/4 = 0 so Δw_13 = 1/4 (w = 1/2); h_12 = h_21 = 1/2 − 1/4 + 1/4 = 1/2 so
# Δw_12 = (−1 − 1/2 + 1/2)/4 = −1/4 (w = 0); h_11 = 1/2 − 1/4, Δw_11 = (1 − 1/2)/4 = 1/8 (w = 3/8);
# h_22 = 1/2 + 1/4, Δw_22 = (1 + 3/2)/4 = 5/8 (w = 7/8).
PAIR_B = np.array([[1, 1, 1, 1], [1, -1, 1, 1]], float)
B_HEBBIAN = np.array([[1 / 2, 0, 1 / 2, 1 / 2], [0, 1 / 2, 0, 0], [1 / 2, 0, 1 / 2, 1 / 2], [1 / 2, 0, 1 / 2, 1 / 2]])
B_STORKEY = np.array([[3 / 8, 0, 1 / 2, 1 / 2], [0, 7 / 8, 0, 0], [1 / 2, 0, 3 / 8, 1 / 2], [1 / 2, 0, 1 / 2, 3 / 8]])
B_PINV = np.array([[1 / 3, 0, 1 / 3, 1 / 3], [0, 1, 0, 0], [1 / 3, 0, 1 / 3, 1 / 3], [1 / 3, 0, 1 / 3, 1 / 3]])


@pytest.mark.parametrize(
    "patterns, rule, expected",
    [
        (PAIR_A, "hebbian", A_HEBBIAN),
        (PAIR_A, "storkey", A_STORKEY),
        (PAIR_A, "pinv", A_PINV),
        (PAIR_B, "hebbian", B_HEBBIAN),
        (PAIR_B, "storkey", B_STORKEY),
        (PAIR_B, "pinv", B_PINV),
    ],
)
@pytest.mark.parametrize("zero_diagonal", [False, True])
def test_four_neuron_weights_by_hand(patterns, rule, expected, zero_diagonal):
    expected = expected.copy()
    if zero_diagonal:
        np.fill_diagonal(expected, 0)
    w = learn(patterns, rule, zero_diagonal)
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-14)
    assert np.array_equal(w, w.T)


def test_storkey_against_the_formula_term_by_term():
    # More than two patterns: with two, a rule that swapped h_ij and h_ji gives the same symmetric result.
    rng = np.random.default_rng(0)
    x = random_patterns(rng, 5, 7)
    n = 7
    w = np.zeros((n, n))
    for xi in x:
        h = np.array([[sum(w[i, k] * xi[k] for k in range(n) if k not in (i, j)) for j in range(n)] for i in range(n)])
        w = w + np.array(
            [[(xi[i] * xi[j] - xi[i] * h[j, i] - h[i, j] * xi[j]) / n for j in range(n)] for i in range(n)]
        )
    np.testing.assert_allclose(learn(x, "storkey", zero_diagonal=False), w, atol=1e-14)
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(learn(x, "storkey")[off], w[off], atol=1e-14)


def test_learn_refuses_what_it_cannot_learn():
    with pytest.raises(ValueError, match="modern"):
        learn(PAIR_A, "modern")
    with pytest.raises(ValueError, match="unknown rule"):
        learn(PAIR_A, "oja")
    with pytest.raises(ValueError, match="bipolar"):
        learn(np.array([[1.0, 0.5, -1, 1]]), "hebbian")


def test_pinv_with_dependent_patterns_is_the_projector_onto_their_span():
    rng = np.random.default_rng(1)
    x = random_patterns(rng, 5, 30)
    dependent = np.vstack([x, x[:2], -x[3:4]])  # repeats and a reverse: rank still 5
    w = learn(dependent, "pinv", zero_diagonal=False)
    np.testing.assert_allclose(w, learn(x, "pinv", zero_diagonal=False), atol=1e-12)
    np.testing.assert_allclose(w @ w, w, atol=1e-12)
    assert np.trace(w) == pytest.approx(5)


# -- async dynamics: energy flip by flip ------------------------------------------------------------------------------
def reference_async(w, probes, rng, max_sweeps):
    """One probe and one neuron at a time, the field recomputed from scratch, the energy after every change;
    the same visiting order as `run` (one permutation per sweep). Returns the final states and the largest
    energy increase seen on any single update."""
    tol = 1e-9 * np.abs(w).sum(axis=1).max()
    states = probes.copy()
    active = np.ones(len(states), bool)
    worst = -np.inf
    for _ in range(max_sweeps):
        if not active.any():
            break
        order = rng.permutation(w.shape[0])
        for k in np.flatnonzero(active):
            s = states[k]
            energy = -0.5 * s @ w @ s
            changed = False
            for i in order:
                h = w[i] @ s
                new = 1.0 if h > tol else -1.0 if h < -tol else (1.0 if s[i] == 0 else s[i])
                if new != s[i]:
                    s[i] = new
                    changed = True
                    after = -0.5 * s @ w @ s
                    worst = max(worst, after - energy)
                    energy = after
            active[k] = changed
    assert not active.any()
    return states, worst


@pytest.mark.parametrize(
    "rule, zero_diagonal",
    [("hebbian", True), ("hebbian", False), ("storkey", True), ("storkey", False), ("pinv", True), ("pinv", False)],
)
def test_async_energy_never_rises_and_run_matches_the_reference(rule, zero_diagonal):
    rng = np.random.default_rng(RULES.index(rule) * 2 + zero_diagonal)
    flips = 0
    for n in (20, 41, 60):
        for p in (1, 3, n // 5, n // 3):
            x = random_patterns(rng, p, n)
            net = HopfieldNetwork(n, rule, zero_diagonal, "async", max_sweeps=100)
            net.store(x)
            probes = np.vstack([
                random_patterns(rng, 4, n),  # far from everything: many flips
                make_probes(x, rng.integers(0, p, 3), rng, noise=0.2),
                make_probes(x, rng.integers(0, p, 2), rng, noise=0.1, mask="lower_half"),  # zeros
            ])  # fmt: skip
            seed = int(rng.integers(2**31))
            expected, worst = reference_async(net.weights, probes, np.random.default_rng(seed), 100)
            result = net.run(probes, np.random.default_rng(seed))
            assert worst <= 1e-12
            np.testing.assert_array_equal(result.states, expected)
            assert result.converged.all() and not result.cycle.any()
            # energy per sweep: the first column is the probes', the last defined one the final states'
            e = result.energy
            np.testing.assert_allclose(e[:, 0], net.energy(probes), atol=1e-9)
            last = e[np.arange(len(e)), result.sweeps]
            np.testing.assert_allclose(last, net.energy(result.states), atol=1e-9)
            steps = np.diff(e, axis=1)
            assert (steps[~np.isnan(steps)] <= 1e-9).all()
            assert np.isnan(e[np.arange(e.shape[1]) > result.sweeps[:, None]]).all()
            flips += int((probes != expected).sum())
    assert flips > 1000  # the comparison saw real dynamics


def test_run_trace_sweeps_and_already_fixed_probes():
    rng = np.random.default_rng(2)
    x = random_patterns(rng, 3, 50)
    net = HopfieldNetwork(50, "pinv")
    net.store(x)
    probes = np.vstack([x, make_probes(x, [0, 1, 2], rng, noise=0.2)])
    result = net.run(probes, rng, trace=True)
    assert list(result.sweeps[:3]) == [0, 0, 0]  # stored patterns: nothing to do
    assert (result.sweeps[3:] >= 1).all() and result.converged.all()
    np.testing.assert_array_equal(result.states, np.vstack([x, x]))
    assert result.trace.shape == (result.sweeps.max() + 1, 6, 50)
    np.testing.assert_array_equal(result.trace[0], probes)
    np.testing.assert_array_equal(result.trace[-1], result.states)
    assert net.run(probes, rng).trace is None


@pytest.mark.parametrize("update", ["async", "sync"])
def test_ties_keep_the_value_and_zeros_take_plus_one(update):
    # Hebbian weights of [1, 1, 1, 1] and [1, 1, −1, 1]: neurons 1, 2, 4 coupled by 1/2, neuron 3 by nothing.
    # Probe (0, 0, −1, 0): the first of 1, 2, 4 to update sees h = 0 (a zero: +1), then the others follow;
    # neuron 3's field is always 0 (a tie: it keeps −1). Probe (−1, −1, 1, −1) is already a fixed point.
    net = HopfieldNetwork(4, "hebbian", update=update)
    net.store(np.array([[1.0, 1, 1, 1], [1, 1, -1, 1]]))
    np.testing.assert_allclose(net.weights[2], 0)
    result = net.run(np.array([[0.0, 0, -1, 0], [-1, -1, 1, -1]]), np.random.default_rng(0))
    np.testing.assert_array_equal(result.states, [[1, 1, -1, 1], [-1, -1, 1, -1]])
    assert result.converged.all() and list(result.sweeps) == [1, 0]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("update", ["async", "sync"])
def test_stored_patterns_are_fixed_points_for_small_p(rule, update):
    rng = np.random.default_rng(3)
    x = random_patterns(rng, 5, 100)
    net = HopfieldNetwork(100, rule, update=update, beta=1.0)
    net.store(x)
    assert fixed_points(net, x).all()
    result = net.run(x, rng)
    assert result.converged.all()
    np.testing.assert_array_equal(np.sign(result.states), x)
    if rule != "modern":
        np.testing.assert_array_equal(result.sweeps, 0)
        np.testing.assert_array_equal(result.states, x)


# -- sync -------------------------------------------------------------------------------------------------------------
def test_sync_reports_two_cycles_and_stops():
    # Two neurons storing (1, −1): w_12 = −1/2; (1, 1) -> (−1, −1) -> (1, 1), a 2-cycle (energy −1/2 both times).
    net = HopfieldNetwork(2, "hebbian", update="sync", max_sweeps=100)
    net.store(np.array([[1.0, -1.0]]))
    result = net.run(np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0]]), np.random.default_rng(0), trace=True)
    assert list(result.cycle) == [True, False, True]
    assert list(result.converged) == [False, True, False]
    assert list(result.sweeps) == [2, 0, 3]  # (0, 0) -> (1, 1) (ties take +1) -> (−1, −1) -> (1, 1)
    np.testing.assert_array_equal(result.trace[:, 0], [[1, 1], [-1, -1], [1, 1], [1, 1]])
    np.testing.assert_allclose(result.energy[0, :3], [0.5, 0.5, 0.5])  # −½ sᵀWs = −w_12 s_1 s_2
    assert list(outcomes(result, np.array([[1.0, -1.0]]), [0, 0, 0])) == ["cycle", "recalled", "cycle"]

    # An antiferromagnet on 30 neurons: every neuron against all others; all +1 flips to all −1 and back.
    n = 30
    net = HopfieldNetwork(n, "hebbian", update="sync", max_sweeps=100)
    net.weights = -(np.ones((n, n)) - np.eye(n)) / n
    result = net.run(np.ones((1, n)), np.random.default_rng(0))
    assert result.cycle[0] and not result.converged[0] and result.sweeps[0] == 2
    # the same weights under async reach a fixed point (half up, half down)
    net.update = "async"
    result = net.run(np.ones((1, n)), np.random.default_rng(0))
    assert result.converged[0] and not result.cycle[0] and result.states.sum() == 0


def test_sync_recalls_from_noise_like_async():
    rng = np.random.default_rng(4)
    x = random_patterns(rng, 5, 200)
    net = HopfieldNetwork(200, "hebbian", update="sync")
    net.store(x)
    result = net.run(make_probes(x, np.arange(5), rng, noise=0.1), rng)
    assert result.converged.all()
    np.testing.assert_array_equal(result.states, x)
    assert (result.sweeps >= 1).all() and (result.sweeps <= 5).all()


def test_unconverged_probes_stop_at_max_sweeps():
    rng = np.random.default_rng(5)
    n = 200
    x = random_patterns(rng, 60, n)  # load 0.3: long async descents
    net = HopfieldNetwork(n, "hebbian", max_sweeps=1)
    net.store(x)
    result = net.run(random_patterns(rng, 20, n), rng)
    assert (~result.converged).any()
    assert (result.sweeps[~result.converged] == 1).all()
    assert not np.isnan(result.energy[:, 1][~result.converged]).any()
    labels = outcomes(result, x, np.zeros(20, int))
    assert (labels[~result.converged] == "unconverged").all()


# -- capacity ---------------------------------------------------------------------------------------------------------
def test_capacity_against_the_literature():
    rng = np.random.default_rng(6)
    hebbian = {r["patterns"]: r for r in capacity_curve(100, [10, 15, 20, 30], 10, ["hebbian"], rng)}
    (storkey,) = capacity_curve(100, [30], 10, ["storkey"], rng)
    (pinv,) = capacity_curve(100, [40], 10, ["pinv"], rng, noise=0.1, zero_diagonal=True)
    fraction = {p: r["fixed_point_fraction"] for p, r in hebbian.items()}
    print("hebbian fixed-point fraction by P:", fraction)
    print("storkey P=30:", storkey, "pinv P=40, 10% noise:", pinv)
    assert fraction[10] >= 0.9
    assert fraction[30] <= 0.15
    assert fraction[10] > 0.5 > fraction[20]  # falls through 0.5 between P/N = 0.1 and 0.2
    assert fraction[10] >= fraction[15] >= fraction[20] >= fraction[30]
    assert storkey["fixed_point_fraction"] >= 0.95
    assert pinv["exact_recall"] >= 0.9
    assert hebbian[10]["load"] == 0.1 and hebbian[10]["trials"] == 10 and hebbian[10]["rule"] == "hebbian"
    assert 0 < hebbian[30]["mean_overlap"] < hebbian[10]["mean_overlap"] <= 1


def test_theoretical_capacity():
    cap = theoretical_capacity("hebbian", 100)
    assert cap["0.138·N"] == pytest.approx(13.8)
    assert cap["N/(2 ln N)"] == pytest.approx(100 / (2 * np.log(100)))
    assert cap["N/(4 ln N)"] == pytest.approx(100 / (4 * np.log(100)))
    assert theoretical_capacity("storkey", 100)["N/√(2 ln N)"] == pytest.approx(100 / np.sqrt(2 * np.log(100)))
    assert theoretical_capacity("pinv", 100) == {"N": 100}
    assert theoretical_capacity("modern", 20) == {"exponential": 2.0**10}
    assert theoretical_capacity("modern", 784)["exponential"] == 2.0**392
    assert theoretical_capacity("modern", 10_000)["exponential"] == float("inf")


# -- modern -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_patterns():
    if not MNIST.is_file():
        pytest.skip(f"{MNIST} not present")
    from nncli.data.idx import read_idx

    images = read_idx(MNIST).reshape(-1, 784)
    rng = np.random.default_rng(7)
    return np.where(images[rng.choice(len(images), 2000, replace=False)] > 0.5 * 255, 1.0, -1.0)


@pytest.mark.parametrize("corruption", [{"noise": 0.1}, {"mask": "lower_half"}])
def test_modern_recalls_2000_mnist_digits(mnist_patterns, corruption):
    x = mnist_patterns
    net = HopfieldNetwork(784, "modern", beta=1.0)
    net.store(x)
    rng = np.random.default_rng(8)
    targets = rng.choice(len(x), 1000, replace=False)
    probes = make_probes(x, targets, rng, **corruption)
    result = net.run(probes, rng)
    exact = (np.sign(result.states) == x[targets]).all(axis=1).mean()
    print(f"modern, 2000 digits, {corruption}: exact recall {exact:.1%}, sweeps {np.bincount(result.sweeps)}")
    assert exact >= 0.99
    # Nearly all settle in a few updates; the seeded choice holds two digits one bit apart, whose noisy probes
    # sit between them (overlaps 783.1 and 782.9) and drift by < 1e-3 per update after 100: not converged.
    assert result.converged.mean() >= 0.99 and not result.cycle.any()
    assert np.median(result.sweeps) <= 2
    e = result.energy
    steps = np.diff(e, axis=1)
    assert (steps[~np.isnan(steps)] <= 1e-9).all()  # the update never raises the energy
    assert (e[~np.isnan(e)] >= -1e-9).all()  # and it is bounded below by 0
    np.testing.assert_allclose(e[:, 0], net.energy(probes), rtol=1e-12)


def test_modern_energy_by_formula_and_update():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 10))
    xi = rng.normal(size=(3, 10))
    beta = 0.7
    net = HopfieldNetwork(10, "modern", beta=beta, max_sweeps=1)
    net.store(x)
    logits = beta * xi @ x.T
    lse = np.log(np.exp(logits).sum(axis=1))
    big_m = np.linalg.norm(x, axis=1).max()
    expected = -lse / beta + 0.5 * (xi * xi).sum(axis=1) + np.log(6) / beta + 0.5 * big_m**2
    np.testing.assert_allclose(net.energy(xi), expected, rtol=1e-12)
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = net.run(xi, rng)
    np.testing.assert_allclose(result.states, soft @ x, rtol=1e-12)
    assert not result.converged.any() and (result.sweeps == 1).all()
    # numerically stable: logits of ~1e5 do not overflow
    big = HopfieldNetwork(10, "modern", beta=1e4)
    big.store(x)
    assert np.isfinite(big.run(xi, rng).states).all() and np.isfinite(big.energy(xi)).all()


# -- outcomes and probes ----------------------------------------------------------------------------------------------
def test_outcomes_on_constructed_states():
    rng = np.random.default_rng(10)
    x = random_patterns(rng, 5, 301)
    mixture = np.sign(x[0] - x[1] + x[2])
    assert np.abs(overlaps(mixture, x)[0, 3:]).max() < 0.25  # the three components have overlap ~±1/2
    spurious = random_patterns(rng, 1, 301)[0]
    states = np.vstack([x[0], -x[1], x[3], mixture, spurious, x[2], x[4]])
    targets = np.array([0, 1, 2, 0, 0, 2, 4])
    converged = np.array([True, True, True, True, True, False, False])
    cycle = np.array([False, False, False, False, False, True, False])
    result = Recall(states, np.ones(7, int), converged, cycle, np.zeros((7, 2)), None)
    labels = outcomes(result, x, targets)
    assert list(labels) == ["recalled", "reversed", "other pattern", "mixture", "spurious", "cycle", "unconverged"]
    assert set(labels) == set(OUTCOMES)
    # a reversed other pattern, and an all-negated mixture, are still those outcomes
    result = Recall(np.vstack([-x[4], -mixture]), np.ones(2, int), np.ones(2, bool), np.zeros(2, bool), None, None)
    assert list(outcomes(result, x, [0, 1])) == ["other pattern", "mixture"]


def test_overlaps():
    x = np.array([[1.0, 1, -1, -1], [1, -1, 1, -1]])
    np.testing.assert_allclose(overlaps(np.array([[1.0, 1, -1, -1], [-1, 1, -1, 1]]), x), [[1, 0], [0, -1]])


def test_make_probes_flips_exactly_and_masks_the_second_half():
    rng = np.random.default_rng(11)
    x = random_patterns(rng, 4, 784)
    targets = np.array([0, 1, 2, 3, 3, 3])
    for noise in (0.0, 0.1, 0.25, 0.5, 1.0):
        probes = make_probes(x, targets, rng, noise=noise)
        np.testing.assert_array_equal((probes != x[targets]).sum(axis=1), round(noise * 784))
    probes = make_probes(x, targets, rng, noise=0.1)
    assert len({tuple(np.flatnonzero(p != x[t])) for p, t in zip(probes, targets)}) == len(targets)  # per probe
    masked = make_probes(x, targets, rng, mask="lower_half")
    assert (masked[:, 392:] == 0).all()
    np.testing.assert_array_equal(masked[:, :392], x[targets, :392])
    both = make_probes(x, targets, rng, noise=0.1, mask="lower_half")
    assert (both[:, 392:] == 0).all() and (both[:, :392] != x[targets, :392]).any()
    with pytest.raises(ValueError, match="mask"):
        make_probes(x, targets, rng, mask="left_half")
    with pytest.raises(ValueError, match="noise"):
        make_probes(x, targets, rng, noise=1.5)


def test_network_refuses_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="rule"):
        HopfieldNetwork(10, "oja")
    with pytest.raises(ValueError, match="update"):
        HopfieldNetwork(10, update="parallel")
    with pytest.raises(ValueError, match="max_sweeps"):
        HopfieldNetwork(10, max_sweeps=0)
    net = HopfieldNetwork(4)
    with pytest.raises(ValueError, match="store"):
        net.run(PAIR_A, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(P, 4\)"):
        net.store(np.ones((2, 5)))
    net.store(PAIR_A)
    with pytest.raises(ValueError, match="probes"):
        net.run(np.full((1, 4), 0.5), np.random.default_rng(0))
