"""Special functions NumPy lacks (scipy is not a runtime dependency), vectorised and dtype-preserving."""

from __future__ import annotations

import math

import numpy as np

from .backend import xp_of

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# in the form of the normal CDF used by R's pnorm and ACM TOMS 715 (ANORM).
_A = (2.2352520354606839287, 161.02823106855587881, 1067.6894854603709582, 18154.981253343561249, 0.065682337918207449113)
_B = (47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956)
_C = (
    0.39894151208813466764, 8.8831497943883759412, 93.506656132177855979, 597.27027639480026226,
    2494.5375852903726711, 6848.1904505362823326, 11602.651437647350124, 9842.7148383839780218,
    1.0765576773720192317e-8,
)
_D = (
    22.266688044328115691, 235.38790178262499861, 1519.377599407554805, 6485.558298266760755,
    18615.571640885098091, 34900.952721145977266, 38912.003286093271411, 19685.429676859990727,
)
_P = (0.21589853405795699, 0.1274011611602473639, 0.022235277870649807, 0.001421619193227893466, 2.9112874951168792e-5, 0.02307344176494017303)
_Q = (1.28426009614491121, 0.468238212480865118, 0.0659881378689285515, 0.00378239633202758244, 7.29751555083966205e-5)
_CENTRE = 0.67448975  # Φ(0.6745) ≈ 3/4: below it a rational function of x² gives Φ(x) − ½ directly
_MIDDLE = math.sqrt(32.0)  # up to here a rational function of |x|, beyond it one of 1/x² (asymptotic form)
_FAR = 40.0  # Φ(-40) underflows to 0 in float64


def softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """exp(x) / Σ exp(x) over the last axis, shifted by the row maximum so it never overflows; `out` may be x."""
    xp = xp_of(x)
    out = xp.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    xp.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def _rational(num_coef, den_coef, t, num=None, den=None):
    """Cody's nested evaluation num/den at t, from num_coef = (n0, …, num_last, lead) and den_coef = (d0, …, den_last):
    num = ((lead·t + n0)·t + n1)·t … + num_last, den = ((t + d0)·t + d1)·t … + den_last.

    Computed in place in the work arrays num and den (shaped like t) when given; returns num.
    """
    xp = xp_of(t)
    *num_coef, num_last, lead = num_coef
    *den_coef, den_last = den_coef
    num = xp.multiply(t, lead, out=num)
    if den is None:
        den = t.copy()
    else:
        xp.copyto(den, t)
    for n, d in zip(num_coef, den_coef, strict=True):
        num += n
        num *= t
        den += d
        den *= t
    num += num_last
    den += den_last
    num /= den
    return num


def normal_cdf(x: np.ndarray, out: np.ndarray | None = None, buffer=None) -> np.ndarray:
    """Φ(x) = P(Z ≤ x) for a standard normal Z, elementwise, in x's float dtype.

    Cody's rational approximations in three ranges of |x|, the Gaussian factor
    e^(−x²/2) split so its exponent is exact (as R's pnorm): within a few
    units in the last place of float64 everywhere, tails included, so its
    derivative passes finite-difference checks. Whole-array passes in a few
    work arrays (no gathers, which cost more than the arithmetic) for the
    centre and middle ranges; the far tails (|x| > √32, rare) are gathered.

    `buffer(name, dtype)`, when given, returns a work array shaped like x (a
    layer's `buffer`, so that repeated calls allocate nothing).
    """
    xp = xp_of(x)
    x = xp.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    if out is None:
        out = xp.empty(x.shape, dtype)
    if buffer is None:
        buffer = lambda name, dt: xp.empty(x.shape, dt)  # noqa: E731
    y, a, b, c = (buffer(f"normal_cdf.{k}", dtype) for k in "yabc")
    xp.abs(x, out=y, dtype=dtype)
    # The upper tail Q(|x|) = P(Z > |x|), for every element (centre ones are replaced at the end).
    xp.minimum(y, _MIDDLE, out=c)
    q = _rational(_C, _D, c, a, b)  # e^(y²/2)·Q(y), in a
    mask, rest = buffer("normal_cdf.mask", np.bool_), buffer("normal_cdf.rest", np.bool_)
    far = xp.greater(y, _MIDDLE, out=mask)
    if far.any():
        xp.minimum(y, _FAR, out=y)
        yf = y[far]
        z = 1.0 / (yf * yf)
        q[far] = (1.0 / math.sqrt(2.0 * math.pi) - z * _rational(_P, _Q, z)) / yf
    xp.multiply(y, 16.0, out=b)
    xp.trunc(b, out=b)
    b *= 1.0 / 16.0  # s = trunc(16y)/16: y² = s² + (y − s)(y + s) with s² exact
    xp.subtract(y, b, out=c)
    y += b
    c *= y  # (y − s)(y + s)
    c *= -0.5
    xp.exp(c, out=c)
    q *= c
    xp.multiply(b, b, out=b)
    b *= -0.5
    xp.exp(b, out=b)
    q *= b  # Q(|x|)
    xp.subtract(1.0, q, out=out)
    _select(out, q, xp.less_equal(x, 0, out=mask), rest)  # Φ(x) = 1 − Q(x) above 0, Q(−x) below
    # The centre: Φ(x) = ½ + x·R(x²), with x clipped to [−1, 1] (only x² ≤ 0.455 is used: large |x|
    # stays out of the arithmetic, and r stays finite for _select).
    xp.clip(x, -1.0, 1.0, out=y)
    xp.multiply(y, y, out=c)
    r = _rational(_A, _B, c, a, b)
    r *= y
    r += 0.5
    _select(out, r, xp.less_equal(xp.abs(y, out=b), _CENTRE, out=mask), rest)
    return out


def _select(out: np.ndarray, value: np.ndarray, where: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """out[where] = value[where] as out·[not where] + value·[where]: exact for finite values, and several
    times faster than np.copyto(where=), whose masked copy is slow. Overwrites value and rest."""
    xp = xp_of(out)
    xp.logical_not(where, out=rest)
    out *= rest
    value *= where
    out += value
    return out
