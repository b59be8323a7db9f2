"""Small-sample statistics for `mtl compare`, in pure Python.

Why not scipy: `import scipy.stats` costs ~1.5 s and `scipy.special` ~0.3 s on our
machines, while `mtl compare` must answer in well under a second. The only special
function needed is Student's t distribution, which reduces to the regularised
incomplete beta function; it is evaluated here by its continued fraction and checked
against scipy in tests/test_compare.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

CONFIDENCE = 0.95


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def sample_std(values: list[float]) -> float | None:
    """Standard deviation with ddof=1; None below two values (it is undefined, not zero)."""
    n = len(values)
    if n < 2:
        return None
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b), evaluated with the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        # Even step, then odd step of the fraction.
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            result *= step
        if abs(step - 1.0) < eps:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast only on this side of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom (df may be fractional)."""
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_density(t: float, df: float) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


@lru_cache(maxsize=256)
def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t, for 0.5 <= q < 1, by Newton's method on the CDF.

    For t >= 0 the CDF is increasing and concave, so Newton started at 0 climbs to the
    root from below without overshooting.
    """
    t = 0.0
    for _ in range(200):
        cdf = 1.0 - t_two_sided_p(t, df) / 2.0
        step = (q - cdf) / t_density(t, df)
        t += step
        if step <= 1e-13 * max(t, 1.0):
            break
    return t


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """95% Student t interval of the mean; None below two values."""
    n = len(values)
    std = sample_std(values)
    if std is None:
        return None
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    m = mean(values)
    return (m - half, m + half)


@dataclass(frozen=True)
class Welch:
    """Welch's comparison of two means: difference a - b, its 95% interval and p-value."""

    difference: float
    low: float | None  # None when either side has fewer than two values
    high: float | None
    df: float | None
    p_value: float | None


def welch(a: list[float], b: list[float]) -> Welch:
    difference = mean(a) - mean(b)
    std_a, std_b = sample_std(a), sample_std(b)
    if std_a is None or std_b is None:
        return Welch(difference, None, None, None, None)
    var_a, var_b = std_a**2 / len(a), std_b**2 / len(b)
    se = math.sqrt(var_a + var_b)
    if se == 0.0:
        # Both sides constant: the interval collapses to the difference itself.
        p = 1.0 if difference == 0.0 else 0.0
        return Welch(difference, difference, difference, None, p)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * se
    p = t_two_sided_p(difference / se, df)
    return Welch(difference, difference - half, difference + half, df, p)
