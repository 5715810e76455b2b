"""Hopfield networks: learning rules, recall dynamics, energies and the measurements built on them.

The mathematical core of the `hopfield` model kind, in float64 NumPy (no CLI,
no registry). Bipolar networks store ±1 patterns in a symmetric weight matrix
W with one of three rules (`learn`):

- hebbian: W = XᵀX / N (Hopfield 1982);
- storkey: Storkey's 1997 incremental rule, whose local-field correction
  terms raise the capacity from about 0.14·N to about N/√(2 ln N);
- pinv: the projection rule W = Xᵀ(XXᵀ)⁺X, the orthogonal projector onto the
  patterns' span (Personnaz et al. 1985; Kanter & Sompolinsky 1987), which
  makes every stored pattern a fixed point up to P ≈ N.

and recall with s_i ← sign(h_i), h = W s, either asynchronously (one neuron
at a time in a seeded random order, which never raises E = −½ sᵀWs when
w_ii ≥ 0) or synchronously (all at once, which can end in a 2-cycle). The
fourth rule, 'modern', keeps the patterns themselves and iterates the
continuous update of Ramsauer et al. 2020, ξ ← Xᵀ softmax(β X ξ), whose
capacity is exponential in N.

Ties: a neuron whose field is zero keeps its value, except a 0 (a masked
bit), which takes +1; so every state is ±1 once updated. "Zero" is
|h_i| ≤ 1e-9 · max_i Σ_j |w_ij| (a billionth of the largest field the
weights can produce): Hebbian fields are exact multiples of 1/N, but in
floating point a sum that is zero in exact arithmetic comes out as ±1e-17,
and the incrementally maintained fields of async recall drift by as much,
so an exact `== 0` would decide genuine ties by rounding noise.

Recall is vectorised over probes: async sweeps loop over neurons (N Python
steps per sweep) and keep the local fields H = S Wᵀ up to date with a rank-1
update for the probes that flipped, instead of recomputing W s per neuron;
probes that reach a fixed point leave the active set and cost nothing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..metrics import Evaluation
from ..registry import PositiveFloat, PositiveInt
from .base import MODELS, ModelKind, ModelPlan, PlanRow

RULES = ("hebbian", "storkey", "pinv", "modern")
UPDATES = ("async", "sync")
OUTCOMES = ("recalled", "reversed", "other pattern", "mixture", "spurious", "cycle", "unconverged")
MASKS = ("lower_half",)

TIE_TOLERANCE = 1e-9  # relative to the largest possible field, max_i Σ_j |w_ij|
MODERN_TOLERANCE = 1e-9  # a modern probe has converged when an update moves no coordinate by this much
_CHUNK = 1 << 22  # elements of a (probes, patterns) block of the modern update (32 MiB in float64)


# -- learning -------------------------------------------------------------------------------------------------------
def _bipolar(patterns: np.ndarray, what: str = "patterns") -> np.ndarray:
    """`patterns` as a float64 (P, N) array, refusing anything but ±1 entries."""
    x = np.asarray(patterns, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a (P, N) array, got shape {x.shape}")
    if not np.all(np.abs(x) == 1):
        raise ValueError(f"{what} must be bipolar (every entry +1 or -1)")
    return x


def _storkey(x: np.ndarray) -> np.ndarray:
    """Storkey 1997: for each pattern ξ in turn, w_ij += (ξ_iξ_j − ξ_i h_ji − h_ij ξ_j) / N with
    h_ij = Σ_{k≠i,j} w_ik ξ_k (the field at i without the contributions of i and j), all pairs at once.
    The diagonal follows the same rule with h_ii = Σ_{k≠i} w_ik ξ_k; it never enters an off-diagonal h_ij."""
    n = x.shape[1]
    w = np.zeros((n, n))
    for xi in x:
        diag = np.diag(w).copy()
        field = w @ xi
        h = field[:, None] - (diag * xi)[:, None] - w * xi[None, :]  # h_ij, k ≠ i, j
        h[np.diag_indices(n)] += diag * xi  # h_ii excludes k = i once, not twice
        w += (np.outer(xi, xi) - xi[:, None] * h.T - h * xi[None, :]) / n
    return w


def _projection(x: np.ndarray) -> np.ndarray:
    """Xᵀ(XXᵀ)⁺X = V_r V_rᵀ from the SVD X = U Σ Vᵀ, keeping the singular values above the usual rank
    tolerance, so that duplicated or dependent patterns give the projector onto their span (not noise)."""
    if x.shape[0] == 0:
        return np.zeros((x.shape[1], x.shape[1]))
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    rank = int(np.sum(sv > sv.max() * max(x.shape) * np.finfo(np.float64).eps))
    v = vt[:rank]
    return v.T @ v


def learn(patterns: np.ndarray, rule: str, zero_diagonal: bool = True) -> np.ndarray:
    """(P, N) bipolar ±1 patterns -> symmetric (N, N) float64 weights for 'hebbian' (W = XᵀX/N), 'storkey'
    (Storkey 1997, 1/N scaling) or 'pinv' (the projection Xᵀ(XXᵀ)⁺X); `zero_diagonal` sets w_ii = 0 (no
    self-coupling, the classical choice: a positive w_ii makes every state a little stickier). Kept, the
    diagonal is P/N (hebbian), in [0, 1] (pinv) or Storkey's own (positive for random patterns: 0.04 to 1.05
    measured at N = 100, P = 5 to 80); async recall lowers the energy at every flip while w_ii ≥ 0. 'modern'
    has no weights (its network keeps the patterns): ValueError."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    if rule == "modern":
        raise ValueError("the 'modern' rule stores the patterns themselves, not a weight matrix")
    x = _bipolar(patterns)
    n = x.shape[1]
    if rule == "hebbian":
        w = x.T @ x / n
    elif rule == "storkey":
        w = _storkey(x)
    else:
        w = _projection(x)
    w = (w + w.T) / 2  # exact symmetry (rounding in the products leaves ~1e-17 asymmetries)
    if zero_diagonal:
        np.fill_diagonal(w, 0.0)
    return w


def theoretical_capacity(rule: str, n: int) -> dict[str, float]:
    """Capacities from the literature, in patterns, for N neurons (random unbiased patterns):

    - hebbian: 0.138·N (Amit, Gutfreund & Sompolinsky 1985: retrieval with ≲1.5% wrong bits),
      N/(2 ln N) (a given pattern is an exact fixed point with probability → 1), N/(4 ln N) (all of them are);
    - storkey: N/√(2 ln N) (Storkey 1997);
    - pinv: N (every pattern of a linearly independent set is a fixed point);
    - modern: 2^(N/2) (Demircigil et al. 2017 for the exponential energy; Ramsauer et al. 2020 prove the
      same exponential order for the continuous update), inf when that overflows a float.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    log_n = math.log(n)
    if rule == "hebbian":
        return {"0.138·N": 0.138 * n, "N/(2 ln N)": n / (2 * log_n), "N/(4 ln N)": n / (4 * log_n)}
    if rule == "storkey":
        return {"N/√(2 ln N)": n / math.sqrt(2 * log_n)}
    if rule == "pinv":
        return {"N": float(n)}
    return {"exponential": math.inf if n / 2 > 1023 else 2.0 ** (n / 2)}


# -- recall ---------------------------------------------------------------------------------------------------------
@dataclass
class Recall:
    """What `HopfieldNetwork.run` did to each of K probes.

    `sweeps[k]` counts the sweeps (modern: updates) after which probe k stopped changing: 0 when it was
    already a fixed point, the sweep that closed the cycle for a sync 2-cycle, `max_sweeps` when it never
    settled. `energy` and `trace` have S+1 = max(sweeps)+1 columns (steps): energy[k, t] is NaN for
    t > sweeps[k], while trace[t, k] keeps showing the probe's final state.
    """

    states: np.ndarray  # (K, N) final states (float64; ±1 for bipolar rules, continuous for modern)
    sweeps: np.ndarray  # (K,) int
    converged: np.ndarray  # (K,) bool: reached a fixed point
    cycle: np.ndarray  # (K,) bool: sync only: ended in a 2-cycle (state(t+2) == state(t) != state(t+1))
    energy: np.ndarray  # (K, S+1): energy before any update and after each sweep; NaN after a probe stopped
    trace: np.ndarray | None  # (S+1, K, N) states after every sweep when run(..., trace=True), else None


class _Log:
    """The bookkeeping `run` shares between dynamics: full states, energies per step, stop information."""

    def __init__(self, states: np.ndarray, trace: bool):
        k = states.shape[0]
        self.states = states
        self.sweeps = np.zeros(k, np.int64)
        self.converged = np.zeros(k, bool)
        self.cycle = np.zeros(k, bool)
        self.columns: list[np.ndarray] = []
        self.trace = [states.copy()] if trace else None

    def energy(self, t: int, idx: np.ndarray, values: np.ndarray) -> None:
        """Energies of probes `idx` after t sweeps."""
        while len(self.columns) <= t:
            self.columns.append(np.full(self.states.shape[0], np.nan))
        self.columns[t][idx] = values

    def stop(self, idx: np.ndarray, sweeps: int, converged: bool = False, cycle: bool = False) -> None:
        self.sweeps[idx] = sweeps
        self.converged[idx] = converged
        self.cycle[idx] = cycle

    def snapshot(self) -> None:
        if self.trace is not None:
            self.trace.append(self.states.copy())

    def result(self) -> Recall:
        steps = int(self.sweeps.max(initial=0)) + 1
        energy = np.stack(self.columns[:steps], axis=1) if self.columns else np.full((self.states.shape[0], 1), np.nan)
        trace = np.stack(self.trace[:steps]) if self.trace is not None else None
        return Recall(self.states, self.sweeps, self.converged, self.cycle, energy, trace)


def _tie_tolerance(w: np.ndarray) -> float:
    return TIE_TOLERANCE * float(np.abs(w).sum(axis=1).max(initial=0.0))


def _sign_update(h: np.ndarray, s: np.ndarray, tol: float) -> np.ndarray:
    """sign(h) where |h| > tol; on a tie the current value, or +1 for a 0 state."""
    return np.where(h > tol, 1.0, np.where(h < -tol, -1.0, np.where(s == 0, 1.0, s)))


def _unstable(s: np.ndarray, h: np.ndarray, tol: float) -> np.ndarray:
    """(K,) True where some neuron would change under s_i ← sign(h_i): a 0, or a field against the state."""
    return ((s * h < -tol) | (s == 0)).any(axis=1)


def _softmax_step(states: np.ndarray, x: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """One modern update for (K, N) states: (Xᵀ softmax(β X ξ) for each, the (K,) log Σ_μ exp(β x_μᵀξ)),
    the (K, P) logits in row blocks of at most _CHUNK elements, max-shifted before exp."""
    k, p = states.shape[0], x.shape[0]
    new = np.empty_like(states)
    lse = np.empty(k)
    rows = max(1, _CHUNK // max(p, 1))
    for a in range(0, k, rows):
        logits = (states[a : a + rows] @ x.T) * beta
        top = logits.max(axis=1, keepdims=True)
        np.subtract(logits, top, out=logits)
        np.exp(logits, out=logits)
        total = logits.sum(axis=1, keepdims=True)
        new[a : a + rows] = (logits / total) @ x
        lse[a : a + rows] = top[:, 0] + np.log(total[:, 0])
    return new, lse


class HopfieldNetwork:
    """The built model: holds `weights` (N, N) for bipolar rules or `patterns` (P, N) for 'modern'.

    `update` ('async' or 'sync') chooses the bipolar dynamics and is ignored by 'modern', whose update is
    synchronous by nature (every coordinate from one softmax); `beta` is modern's inverse temperature and
    is ignored by the bipolar rules. `max_sweeps` bounds every run.
    """

    def __init__(
        self,
        n: int,
        rule: str = "hebbian",
        zero_diagonal: bool = True,
        update: str = "async",
        max_sweeps: int = 100,
        beta: float = 1.0,
    ):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
        if update not in UPDATES:
            raise ValueError(f"unknown update {update!r}; expected one of {', '.join(UPDATES)}")
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not (isinstance(max_sweeps, (int, np.integer)) and max_sweeps >= 1):
            raise ValueError(f"max_sweeps must be a positive integer, got {max_sweeps!r}")
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        self.n = int(n)
        self.rule = rule
        self.zero_diagonal = bool(zero_diagonal)
        self.update = update
        self.max_sweeps = int(max_sweeps)
        self.beta = float(beta)
        self.weights: np.ndarray | None = None
        self.patterns: np.ndarray | None = None

    # -- storing --------------------------------------------------------------------------------------------------
    def store(self, patterns: np.ndarray) -> None:
        """Learn the (P, N) patterns (replacing what was stored): weights for bipolar rules (±1 patterns),
        the patterns themselves for 'modern' (any finite values; ±1 in practice)."""
        x = np.asarray(patterns, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"patterns must be (P, {self.n}), got shape {x.shape}")
        if self.rule == "modern":
            if x.shape[0] == 0 or not np.isfinite(x).all():
                raise ValueError("modern patterns must be at least one row of finite values")
            self.patterns = x.copy()
        else:
            self.weights = learn(x, self.rule, self.zero_diagonal)

    def _stored(self) -> np.ndarray:
        stored = self.patterns if self.rule == "modern" else self.weights
        if stored is None:
            raise ValueError("nothing stored yet: call store(patterns) first")
        return stored

    def _states(self, states: np.ndarray, what: str) -> np.ndarray:
        s = np.array(states, dtype=np.float64)  # a copy: run updates it in place
        if s.ndim == 1:
            s = s[None]
        if s.ndim != 2 or s.shape[1] != self.n:
            raise ValueError(f"{what} must be (K, {self.n}), got shape {np.shape(states)}")
        if self.rule != "modern" and not np.isin(s, (-1.0, 0.0, 1.0)).all():
            raise ValueError(f"{what} must hold -1, +1 (or 0 for unknown bits)")
        if self.rule == "modern" and not np.isfinite(s).all():
            raise ValueError(f"{what} must be finite")
        return s

    # -- energy ---------------------------------------------------------------------------------------------------
    def energy(self, states: np.ndarray) -> np.ndarray:
        """(K,) energies. Bipolar rules: E = −½ sᵀWs (diagonal included when it is not zeroed). Modern
        (Ramsauer et al. 2020): E = −β⁻¹ log Σ_μ exp(β x_μᵀξ) + ½ ξᵀξ + β⁻¹ log P + ½ M², M = max_μ ‖x_μ‖,
        which the update never raises and which is ≥ 0."""
        stored = self._stored()
        s = self._states(states, "states")
        if self.rule == "modern":
            _, lse = _softmax_step(s, stored, self.beta)
            return self._modern_energy(s, lse)
        return -0.5 * np.einsum("kn,kn->k", s @ stored.T, s)

    def _modern_energy(self, s: np.ndarray, lse: np.ndarray, constant: float | None = None) -> np.ndarray:
        """The modern energy from log Σ exp (`lse`); `constant` = β⁻¹ log P + ½ M², computed when not given."""
        if constant is None:
            constant = self._modern_constant()
        return -lse / self.beta + 0.5 * np.einsum("kn,kn->k", s, s) + constant

    def _modern_constant(self) -> float:
        x = self.patterns
        return math.log(x.shape[0]) / self.beta + 0.5 * float((x * x).sum(axis=1).max())

    # -- recall ---------------------------------------------------------------------------------------------------
    def run(self, probes: np.ndarray, rng: np.random.Generator, trace: bool = False) -> Recall:
        """Let each of the (K, N) probes evolve until it stops (fixed point, sync 2-cycle) or `max_sweeps`.
        `rng` draws async's visiting orders (one permutation per sweep, shared by all probes) and nothing
        else; sync and modern are deterministic. See `Recall` for what comes back."""
        stored = self._stored()
        s = self._states(probes, "probes")
        if self.rule == "modern":
            return self._run_modern(s, stored, trace)
        if self.update == "sync":
            return self._run_sync(s, stored, trace)
        return self._run_async(s, stored, rng, trace)

    def _run_async(self, s: np.ndarray, w: np.ndarray, rng: np.random.Generator, trace: bool) -> Recall:
        """Sweeps of single-neuron updates. The active probes' states S and fields H = S Wᵀ are (K_a, N)
        probe-major: a neuron's column is one strided read, and the probes that flip at neuron i get the
        rank-1 correction H += d·W[:, i]ᵀ on contiguous rows. After each sweep a probe is stable when no
        neuron would change (checked on H, the same test as a whole sweep without a flip, one sweep sooner)."""
        log = _Log(s, trace)
        tol = _tie_tolerance(w)
        wcols = np.ascontiguousarray(w.T)  # wcols[i] = W[:, i], what H gains per unit change of s_i
        active = np.arange(s.shape[0])
        sa = s.copy()
        ha = sa @ w.T
        log.energy(0, active, -0.5 * np.einsum("kn,kn->k", sa, ha))
        keep = _unstable(sa, ha, tol)
        log.stop(active[~keep], 0, converged=True)
        active, sa, ha = active[keep], sa[keep], ha[keep]
        has_zero = bool((sa == 0).any())
        for t in range(1, self.max_sweeps + 1):
            if active.size == 0:
                break
            for i in rng.permutation(self.n):
                col, si = ha[:, i], sa[:, i]
                flip = si * col < -tol
                if has_zero:  # only in the first sweep: a 0 takes sign(h_i), +1 on a tie
                    flip |= si == 0
                changed = np.flatnonzero(flip)
                if changed.size:
                    new = np.where(col[changed] < -tol, -1.0, 1.0)
                    delta = new - si[changed]
                    sa[changed, i] = new
                    ha[changed] += delta[:, None] * wcols[i]
            has_zero = False
            log.states[active] = sa
            log.energy(t, active, -0.5 * np.einsum("kn,kn->k", sa, ha))
            keep = _unstable(sa, ha, tol)
            log.stop(active[~keep], t, converged=True)
            log.stop(active[keep], t)  # overwritten when they settle later
            log.snapshot()
            active, sa, ha = active[keep], sa[keep], ha[keep]
        return log.result()

    def _run_sync(self, s: np.ndarray, w: np.ndarray, trace: bool) -> Recall:
        """s ← sign(W s) for all neurons at once, until s(t) == s(t−1) (fixed point, sweeps = t−1) or
        s(t) == s(t−2) ≠ s(t−1) (2-cycle, sweeps = t, the final state s(t)); symmetric weights leave no
        other possibility (Goles et al. 1985), so max_sweeps is only a guard."""
        log = _Log(s, trace)
        tol = _tie_tolerance(w)
        active = np.arange(s.shape[0])
        cur, prev = s.copy(), None
        for t in range(1, self.max_sweeps + 1):
            if active.size == 0:
                break
            h = cur @ w.T
            log.energy(t - 1, active, -0.5 * np.einsum("kn,kn->k", cur, h))
            new = _sign_update(h, cur, tol)
            fixed = (new == cur).all(axis=1)
            cycled = ~fixed & (prev == new).all(axis=1) if prev is not None else np.zeros_like(fixed)
            log.stop(active[fixed], t - 1, converged=True)
            moving = ~fixed
            log.states[active[moving]] = new[moving]
            if cycled.any():
                log.stop(active[cycled], t, cycle=True)
                log.energy(t, active[cycled], self.energy(new[cycled]))
            keep = moving & ~cycled
            if t == self.max_sweeps and keep.any():
                log.stop(active[keep], t)
                log.energy(t, active[keep], self.energy(new[keep]))
            if moving.any():
                log.snapshot()
            active, prev, cur = active[keep], cur[keep], new[keep]
        return log.result()

    def _run_modern(self, s: np.ndarray, x: np.ndarray, trace: bool) -> Recall:
        """ξ ← Xᵀ softmax(β X ξ) for the active probes at once; a probe stops when an update moves no
        coordinate by MODERN_TOLERANCE (its state is then the one before that negligible update, sweeps
        the updates that led to it), else after max_sweeps. The logits of each step give the energy of
        the state they came from, so energies cost nothing extra."""
        log = _Log(s, trace)
        constant = self._modern_constant()
        active = np.arange(s.shape[0])
        cur = s.copy()
        for t in range(1, self.max_sweeps + 1):
            if active.size == 0:
                break
            new, lse = _softmax_step(cur, x, self.beta)
            log.energy(t - 1, active, self._modern_energy(cur, lse, constant))
            done = np.abs(new - cur).max(axis=1, initial=0.0) < MODERN_TOLERANCE
            log.stop(active[done], t - 1, converged=True)
            keep = ~done
            log.states[active[keep]] = new[keep]
            if t == self.max_sweeps and keep.any():
                log.stop(active[keep], t)
                log.energy(t, active[keep], self.energy(new[keep]))
            if keep.any():
                log.snapshot()
            active, cur = active[keep], new[keep]
        return log.result()


# -- measurements ---------------------------------------------------------------------------------------------------
def overlaps(states: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """(K, P) overlaps m = s·ξ / N: 1 for the pattern itself, −1 for its reverse, ~±1/√N for an unrelated one."""
    states, patterns = np.atleast_2d(np.asarray(states, np.float64)), np.atleast_2d(np.asarray(patterns, np.float64))
    return states @ patterns.T / patterns.shape[1]


def outcomes(result: Recall, patterns: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K,) strings from OUTCOMES, judged on sign(state): 'recalled' (its target pattern), 'reversed' (−target),
    'other pattern' (another stored pattern or its reverse), 'mixture' (sign(±ξa ± ξb ± ξc) for the three
    patterns with the largest |overlap|, signs from the overlaps), 'spurious' (any other fixed point), 'cycle'
    (sync 2-cycle), 'unconverged' (max_sweeps reached). A probe that did not settle is 'cycle' or
    'unconverged' whatever its last state."""
    x = np.atleast_2d(np.asarray(patterns, np.float64))
    targets = np.asarray(targets, np.int64)
    sig = np.sign(result.states)
    k, (p, n) = sig.shape[0], x.shape
    rows = np.arange(k)
    dots = sig @ x.T  # (K, P), = ±N exactly for a pattern or its reverse
    same, opposite = dots == n, dots == -n
    label = np.full(k, "spurious", dtype=object)
    if p >= 3:
        top = np.argpartition(-np.abs(dots), 2, axis=1)[:, :3]  # (K, 3)
        signs = np.sign(np.take_along_axis(dots, top, axis=1))
        mixture = np.sign(np.einsum("ka,kan->kn", signs, x[top]))
        label[(mixture == sig).all(axis=1) & (signs != 0).all(axis=1)] = "mixture"
    label[(same | opposite).any(axis=1)] = "other pattern"
    label[opposite[rows, targets]] = "reversed"
    label[same[rows, targets]] = "recalled"
    unsettled = ~result.converged
    label[unsettled] = np.where(result.cycle[unsettled], "cycle", "unconverged")
    return label.astype(str)


@dataclass(frozen=True)
class RecallTrace:
    """One probe of one stored pattern followed sweep by sweep (`nncli recall`, `nncli visualize --what patterns`)."""

    states: np.ndarray  # (sweeps + 1, N): the probe, then the state after each sweep
    energy: list[float]  # per state
    overlaps: np.ndarray  # (sweeps + 1, P) with every stored pattern
    sweeps: int
    ended: str  # one of OUTCOMES


def trace_recall(model, patterns: np.ndarray, index: int, rng: np.random.Generator, noise: float | None = None,
                 mask: str | None = None) -> RecallTrace:
    """Probe stored pattern `index` (noise flipped bits, or a mask) and keep every sweep's state."""
    target = np.array([index])
    result = model.run(make_probes(patterns, target, rng, noise or 0.0, mask), rng, trace=True)
    sweeps = int(result.sweeps[0])
    states = result.trace[: sweeps + 1, 0]
    energy = [float(e) for e in result.energy[0, : sweeps + 1]]
    return RecallTrace(states, energy, overlaps(states, patterns), sweeps, str(outcomes(result, patterns, target)[0]))


def make_probes(
    patterns: np.ndarray, targets: np.ndarray, rng: np.random.Generator, noise: float = 0.0, mask: str | None = None
) -> np.ndarray:
    """Copies of patterns[targets] (K, N) with exactly round(noise·N) bits flipped in each (positions drawn
    per probe), then, with mask='lower_half', neurons N//2 onwards set to 0 (unknown): for images in row-major
    order, the lower half."""
    x = np.atleast_2d(np.asarray(patterns, np.float64))
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be a fraction in [0, 1], got {noise}")
    if mask is not None and mask not in MASKS:
        raise ValueError(f"unknown mask {mask!r}; expected one of {', '.join(MASKS)}")
    probes = x[np.asarray(targets, np.int64)].copy()
    k, n = probes.shape
    flips = round(noise * n)
    if flips and k:
        where = np.argpartition(rng.random((k, n)), flips - 1, axis=1)[:, :flips]
        probes[np.arange(k)[:, None], where] *= -1
    if mask == "lower_half":
        probes[:, n // 2 :] = 0.0
    return probes


def fixed_points(network: HopfieldNetwork, patterns: np.ndarray) -> np.ndarray:
    """(P,) True where a pattern is left unchanged by one update of every neuron (the tie rule applies:
    a zero field keeps the bit); for 'modern', where sign(one update) is the pattern."""
    x = np.atleast_2d(np.asarray(patterns, np.float64))
    if network.rule == "modern":
        new, _ = _softmax_step(x, network._stored(), network.beta)
        return (np.sign(new) == x).all(axis=1)
    w = network._stored()
    return ~_unstable(x, x @ w.T, _tie_tolerance(w))


def capacity_curve(
    n: int,
    pattern_counts,
    trials: int,
    rules,
    rng: np.random.Generator,
    noise: float = 0.0,
    zero_diagonal: bool = True,
    update: str = "async",
    max_sweeps: int = 100,
    beta: float = 1.0,
) -> list[dict]:
    """For each rule and each P in `pattern_counts`, `trials` fresh sets of P random ±1 patterns (P, n), one
    row per (rule, P) with means over trials: 'fixed_point_fraction' (stored patterns that are fixed points,
    `fixed_points`), 'exact_recall' (probes, one per pattern with `noise` flipped bits, that settle exactly at
    their pattern: outcome 'recalled', as `nncli eval` counts) and 'mean_overlap' (final overlap with the target), beside 'rule', 'patterns', 'load'
    (P/N) and 'trials'."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    rows = []
    for rule in rules:
        for p in pattern_counts:
            p = int(p)
            fixed, exact, overlap = [], [], []
            for _ in range(trials):
                x = np.where(rng.random((p, n)) < 0.5, -1.0, 1.0)
                net = HopfieldNetwork(n, rule, zero_diagonal, update, max_sweeps, beta)
                net.store(x)
                targets = np.arange(p)
                result = net.run(make_probes(x, targets, rng, noise), rng)
                fixed.append(fixed_points(net, x).mean())
                exact.append(np.mean(outcomes(result, x, targets) == "recalled"))  # as eval counts it: settled there
                overlap.append(overlaps(result.states, x)[targets, targets].mean())
            rows.append(
                {
                    "rule": rule,
                    "patterns": p,
                    "load": p / n,
                    "trials": trials,
                    "fixed_point_fraction": float(np.mean(fixed)),
                    "exact_recall": float(np.mean(exact)),
                    "mean_overlap": float(np.mean(overlap)),
                }
            )
    return rows


# -- the model kind: what train, eval, summary and checkpoints use ---------------------------------------------


class StoredNetwork(HopfieldNetwork):
    """A HopfieldNetwork with the model contract: its one array (`weights`, or the modern rule's `patterns`) is
    the checkpoint's param/, and a modern net's pattern count comes from the checkpoint (`resize_param`)."""

    def __init__(self, input_shape, rule, zero_diagonal, update, max_sweeps, beta):
        n = math.prod(input_shape)
        super().__init__(n, rule, zero_diagonal, update, max_sweeps, beta)
        self.input_shape = self.output_shape = tuple(input_shape)
        self.dtype = np.dtype(np.float64)
        if rule == "modern":
            self.patterns = np.zeros((0, n))
        else:
            self.weights = np.zeros((n, n))

    @property
    def _key(self) -> str:
        return "patterns" if self.rule == "modern" else "weights"

    @property
    def num_params(self) -> int:
        return int(getattr(self, self._key).size)

    def named_params(self):
        yield self._key, getattr(self, self._key)

    def named_state(self):
        return iter(())

    def store(self, patterns: np.ndarray) -> None:
        super().store(patterns)
        # for the storage summary: P (the weights do not keep it) and the patterns one update leaves alone
        self.stored = len(patterns)
        self.fixed_point_fraction = float(fixed_points(self, patterns).mean())

    def initialize(self, rng) -> None:
        """Nothing to draw: `store` sets the weights."""

    def resize_param(self, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The modern rule keeps P patterns of N neurons, P set by the data: make room for a checkpoint's."""
        if self.rule == "modern" and key == "patterns" and len(shape) == 2 and shape[1] == self.n:
            self.patterns = np.zeros(shape)
            return self.patterns
        return None


@dataclass
class MemoryEvaluation:
    """How probes of the stored patterns ended (`nncli eval` of a Hopfield checkpoint)."""

    n: int  # probes
    accuracy: float  # exact-recall rate: the probe ended at its own pattern
    overlap: float  # mean overlap m = s·ξ/N of the final state with the probe's pattern
    bit_error_rate: float  # mean fraction of bits that differ from the probe's pattern
    outcomes: dict[str, int]  # OUTCOMES -> count
    sweeps: float  # mean sweeps a probe took
    noise: float
    mask: str | None


def _signs(states: np.ndarray) -> np.ndarray:
    """Signs of (possibly continuous) states, +1 at 0."""
    return np.where(states >= 0, 1.0, -1.0)


@MODELS.register("hopfield")
class Hopfield(ModelKind):
    """Hopfield network (Hopfield 1982): N bipolar neurons, each input and output, symmetric weights; the stored patterns are stable states that a probe settles into.

    The training split is what it stores (one shot, no epochs): binarised images (data.binarize) or
    random_patterns. `nncli eval` probes the stored patterns (--noise, --mask lower_half, --probes),
    `nncli recall` follows one probe sweep by sweep, `nncli capacity` sweeps the number of patterns.

    Options:
    rule: hebbian (W = XᵀX/N), storkey (Storkey 1997, incremental), pinv (projection, pseudo-inverse) or modern (Ramsauer et al. 2020: ξ ← Xᵀ·softmax(β·X·ξ), the patterns stored as they are)
    zero_diagonal: no self-connections (w_ii = 0), so the energy never rises under asynchronous updates (kept, Storkey's self-weights can turn negative at high load, and then it can)
    update: async (one neuron at a time, a seeded random order per sweep) or sync (all at once; 2-cycles are detected); the modern rule updates all at once
    max_sweeps: a probe stops after this many sweeps (passes over every neuron) if it has not settled
    beta: inverse temperature of the modern rule's softmax
    """

    gradient_trained = False
    one_shot_training = ()
    no_epochs = "a Hopfield network stores its patterns in one shot: there are no epochs to continue and no weights to start from"

    def __init__(
        self,
        rule: Literal["hebbian", "storkey", "pinv", "modern"] = "hebbian",
        zero_diagonal: bool = True,
        update: Literal["async", "sync"] = "async",
        max_sweeps: PositiveInt = 100,
        beta: PositiveFloat = 1.0,
    ):
        self.rule, self.zero_diagonal, self.update, self.max_sweeps, self.beta = rule, zero_diagonal, update, max_sweeps, beta

    def describe(self) -> str:
        if self.rule == "modern":
            return f"hopfield(modern, β={self.beta:g})"
        return f"hopfield({self.rule}, {self.update}{', zero diagonal' if self.zero_diagonal else ''})"

    def plan(self, input_shape, num_classes, dtype) -> ModelPlan:
        n = math.prod(input_shape)
        params = 0 if self.rule == "modern" else n * n  # modern: the P stored patterns, P × N, known once stored
        rows = [PlanRow(0, self.describe(), (n,), params, 4 * n)]
        return ModelPlan(tuple(input_shape), (n,), rows, 8)

    def build(self, input_shape, num_classes, dtype, settings) -> StoredNetwork:
        return StoredNetwork(input_shape, self.rule, self.zero_diagonal, self.update, self.max_sweeps, self.beta)

    def check_fits(self, dataset) -> None:
        if math.prod(dataset.input_shape) < 2:
            raise ConfigError(f"a Hopfield network needs at least 2 neurons; this data gives {math.prod(dataset.input_shape)}", ("data",))
        if dataset.val is not None:
            raise ConfigError(
                "a Hopfield network stores every training pattern; a validation split would hold some back: set it to 0",
                ("data", "validation_split"),
            )
        x = dataset.train.x
        if not np.all((x == 1) | (x == -1)):
            raise DataError(
                f"{dataset.description}: a Hopfield network stores bipolar ±1 patterns; binarise the images "
                "(data.binarize: 0.5) or use data.source: random_patterns"
            )

    def fit(self, model: StoredNetwork, split) -> None:
        model.store(split.x.reshape(len(split), -1).astype(np.float64))

    def fit_summary(self, model: StoredNetwork) -> dict:
        n, p = model.n, model.stored
        return {
            "neurons N": n,
            "patterns P": p,
            "load P/N": p / n,
            "rule": self.describe(),
            "capacity (patterns)": theoretical_capacity(self.rule, n),
            "fixed points": f"{model.fixed_point_fraction:.1%} of the stored patterns",
        }

    def evaluate(self, model, loss, split, num_classes, batch_size=1000, keep_probabilities=False):
        """The stored patterns as their own probes (no noise): the fraction that are fixed points, as accuracy."""
        result = self.probe(model, split, np.random.default_rng(0))
        return Evaluation(result.n, float("nan"), result.accuracy, np.zeros((0, 0), np.int64))

    def probe(self, model, split, rng, noise: float = 0.0, mask: str | None = None, probes: int | None = None) -> MemoryEvaluation:
        """Probe the stored patterns: `probes` of them (all by default; more cycle through them), with a
        fraction `noise` of bits flipped or the lower half masked to 0, each run until it settles."""
        patterns = split.x.reshape(len(split), -1).astype(np.float64)
        count = len(patterns) if probes is None else probes
        targets = np.resize(rng.permutation(len(patterns)), count)  # every pattern once before any twice
        result = model.run(make_probes(patterns, targets, rng, noise, mask), rng)
        ended = outcomes(result, patterns, targets)
        final, wanted = _signs(result.states), patterns[targets]
        return MemoryEvaluation(
            n=count,
            accuracy=float(np.mean(ended == "recalled")),
            overlap=float(np.mean(np.sum(final * wanted, axis=1) / model.n)),
            bit_error_rate=float(np.mean(final != wanted)),
            outcomes={name: int(np.sum(ended == name)) for name in OUTCOMES},
            sweeps=float(np.mean(result.sweeps)),
            noise=noise,
            mask=mask,
        )
