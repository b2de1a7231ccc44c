import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from driftstream.core.stats import (
    STATISTICS,
    Statistic,
    chi2_pvalue,
    chi2_sf,
    compute,
    crossed,
    gamma_q,
    js_distance,
    ks_binned,
    linf,
    psi,
    severity,
    wasserstein_binned,
)

SYMMETRIC = [js_distance, ks_binned, linf, psi]


def random_pairs(seed, count=50):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        size = int(rng.integers(2, 30))
        left = rng.integers(0, 100, size).astype(float)
        right = rng.integers(0, 100, size).astype(float)
        left[0] += 1  # never empty
        right[-1] += 1
        yield left, right


# ------------------------------------------------------------- hand examples


def test_psi_hand_example():
    expected = 0.1 * math.log(0.6 / 0.5) + (-0.1) * math.log(0.4 / 0.5)
    assert psi([50, 50], [40, 60]) == pytest.approx(expected, rel=1e-14)


def test_psi_floors_empty_bins():
    value = psi([10, 0], [5, 5])
    floored = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert value == pytest.approx(floored, rel=1e-14)
    assert math.isfinite(psi([1, 0], [0, 1]))
    with pytest.raises(ValueError, match="eps"):
        psi([1, 1], [1, 1], eps=0.0)


def test_js_hand_example():
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4)
    divergence = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5)
    assert js_distance([2, 0], [1, 1]) == pytest.approx(math.sqrt(divergence), rel=1e-14)
    assert js_distance([1, 0], [0, 1]) == 1.0


def test_ks_hand_example():
    assert ks_binned([1, 1, 0, 0], [0, 1, 1, 0]) == 0.5
    assert ks_binned([1, 0], [0, 1]) == 1.0
    assert ks_binned([2, 1, 1], [1, 1, 2]) == pytest.approx(0.25)


def test_linf_hand_example():
    assert linf([2, 2], [1, 3]) == 0.25
    assert linf([1, 0, 0], [0, 0, 1]) == 1.0


def test_wasserstein_hand_example():
    # all mass moves from 0 to 2 (distance 2), scaled by 4
    assert wasserstein_binned([1, 0, 0], [0, 0, 1], [0.0, 1.0, 2.0], 4.0) == 0.5
    # half the mass moves by 1
    assert wasserstein_binned([2, 0], [1, 1], [0.0, 1.0], None) == 0.5


@pytest.mark.parametrize("scale", [None, 0.0, -2.0, math.nan, math.inf])
def test_wasserstein_bad_scale_means_unscaled(scale):
    assert wasserstein_binned([1, 0], [0, 1], [0.0, 3.0], scale) == 3.0


def test_wasserstein_unsorted_points_match_sorted():
    points = np.array([2.0, -1.0, 0.5, 4.0])
    order = np.argsort(points)
    left, right = np.array([1.0, 4.0, 2.0, 0.0]), np.array([3.0, 0.0, 1.0, 5.0])
    shuffled = wasserstein_binned(left, right, points, 1.0)
    ordered = wasserstein_binned(left[order], right[order], points[order], 1.0)
    assert shuffled == pytest.approx(ordered, rel=1e-14)


def test_wasserstein_rejects_bad_points():
    with pytest.raises(ValueError, match="points"):
        wasserstein_binned([1, 1], [1, 1], [0.0], 1.0)
    with pytest.raises(ValueError, match="points"):
        wasserstein_binned([1, 1], [1, 1], [0.0, math.nan], 1.0)


# ------------------------------------------------------------ scipy oracles


def test_js_matches_scipy_base_2():
    for left, right in random_pairs(10):
        assert js_distance(left, right) == pytest.approx(
            jensenshannon(left, right, base=2), rel=1e-9, abs=1e-12
        )


def test_wasserstein_matches_scipy_weighted():
    rng = np.random.default_rng(11)
    for left, right in random_pairs(12):
        points = np.sort(rng.normal(0.0, 3.0, left.size))
        oracle = sps.wasserstein_distance(points, points, left, right)
        assert wasserstein_binned(left, right, points, 2.5) == pytest.approx(
            oracle / 2.5, rel=1e-9, abs=1e-12
        )


def test_ks_matches_scipy_on_samples_concentrated_at_bin_points():
    # with every sample sitting at its bin's point, binned and raw KS agree
    for left, right in random_pairs(13):
        points = np.arange(left.size, dtype=float)
        sample_left = np.repeat(points, left.astype(int))
        sample_right = np.repeat(points, right.astype(int))
        oracle = sps.ks_2samp(sample_left, sample_right).statistic
        assert ks_binned(left, right) == pytest.approx(oracle, rel=1e-12)


def test_chi2_matches_scipy_contingency():
    for left, right in random_pairs(14):
        left += 1  # no column empty on both sides, so scipy sees the same table
        oracle = sps.chi2_contingency(np.vstack([left, right]), correction=False).pvalue
        assert chi2_pvalue(left, right) == pytest.approx(oracle, rel=1e-9, abs=1e-300)


def test_chi2_drops_bins_empty_on_both_sides():
    with_gaps = chi2_pvalue([10, 0, 20, 0, 30], [12, 0, 25, 0, 20])
    assert with_gaps == pytest.approx(chi2_pvalue([10, 20, 30], [12, 25, 20]), rel=1e-14)
    table = np.array([[10, 20, 30], [12, 25, 20]])
    oracle = sps.chi2_contingency(table, correction=False).pvalue
    assert with_gaps == pytest.approx(oracle, rel=1e-9)


def test_chi2_false_alarm_rate_is_its_alpha_when_the_baseline_is_a_sample():
    # The baseline is a sample as noisy as the window; a goodness-of-fit test
    # that took its shares as exact alarmed at about 4x alpha here.
    rng = np.random.default_rng(2024)
    shares = np.array([0.40, 0.15, 0.12, 0.10, 0.08, 0.07, 0.05, 0.03])
    trials, alpha = 4000, 0.01
    alarms = sum(
        chi2_pvalue(rng.multinomial(20_000, shares), rng.multinomial(5_000, shares)) < alpha
        for _ in range(trials)
    )
    assert 0.5 * alpha <= alarms / trials <= 1.5 * alpha
    shifted = shares + np.array([0, 0, 0, 0.04, 0, 0, 0, 0])
    shifted /= shifted.sum()
    assert chi2_pvalue(rng.multinomial(20_000, shares), rng.multinomial(5_000, shifted)) < 1e-6


def test_chi2_new_category_is_strong_evidence():
    assert chi2_pvalue([500, 500, 0], [480, 490, 30]) < 1e-6
    assert chi2_pvalue([10_000, 10_000, 0], [480, 490, 30]) < 1e-12  # a baseline that big
    assert chi2_pvalue([5, 0], [5, 0]) == 1.0  # one bin in use: nothing to test


DF_GRID = [1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500]


@pytest.mark.parametrize("df", DF_GRID)
def test_chi2_sf_matches_scipy_grid(df):
    fractions = [0.001, 0.01, 0.1, 0.3, 0.5, 0.8, 0.95, 1.0, 1.05, 1.2, 1.5, 2.0, 3.0, 5.0]
    xs = [0.0, 1e-8, 0.5, 1.0, 2.0, *(df * f for f in fractions), df + 2.0, 2 * df + 40]
    for x in xs:
        oracle = sps.chi2.sf(x, df)
        value = chi2_sf(x, df)
        assert value == pytest.approx(oracle, rel=1e-9, abs=1e-300), (x, df)


def test_chi2_sf_edges():
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(-1.0, 3) == 1.0
    assert chi2_sf(math.inf, 3) == 0.0
    assert math.isnan(chi2_sf(math.nan, 3))
    with pytest.raises(ValueError, match="df"):
        chi2_sf(1.0, 0)


def test_gamma_q_matches_scipy_off_half_integers():
    for a in [0.1, 0.7, 1.3, 9.9, 33.3, 260.1]:
        for x in [0.05, a * 0.5, a, a + 1.0, a * 2 + 3]:
            assert gamma_q(a, x) == pytest.approx(sps.gamma.sf(x, a), rel=1e-9, abs=1e-300), (a, x)
    with pytest.raises(ValueError, match="a must"):
        gamma_q(0.0, 1.0)


# --------------------------------------------------------------- properties


@pytest.mark.parametrize("func", [*SYMMETRIC, chi2_pvalue])
def test_identical_distributions(func):
    expected = 1.0 if func is chi2_pvalue else 0.0
    for counts, _ in random_pairs(15, count=10):
        assert func(counts, counts) == pytest.approx(expected, abs=1e-12)
        # a scaled copy is the same distribution
        assert func(counts, 3 * counts) == pytest.approx(expected, abs=1e-12)


def test_wasserstein_identical_is_zero():
    for counts, _ in random_pairs(16, count=10):
        points = np.arange(counts.size, dtype=float)
        assert wasserstein_binned(counts, 2 * counts, points, 1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("func", SYMMETRIC)
def test_symmetric(func):
    for left, right in random_pairs(17, count=20):
        assert func(left, right) == pytest.approx(func(right, left), rel=1e-12, abs=1e-15)


def test_wasserstein_symmetric_and_bounded_by_range():
    for left, right in random_pairs(18, count=20):
        points = np.linspace(-2.0, 5.0, left.size)
        forward = wasserstein_binned(left, right, points, 1.0)
        assert forward == pytest.approx(wasserstein_binned(right, left, points, 1.0), rel=1e-12)
        assert 0.0 <= forward <= 7.0


@pytest.mark.parametrize("func", [js_distance, ks_binned, linf])
def test_bounded_in_unit_interval(func):
    for left, right in random_pairs(19):
        assert 0.0 <= func(left, right) <= 1.0


def test_proportions_and_counts_agree():
    counts_left, counts_right = np.array([10, 30, 60]), np.array([25, 25, 50])
    for func in SYMMETRIC:
        assert func(counts_left, counts_right) == pytest.approx(
            func(counts_left / 100, counts_right / 100), rel=1e-12
        )


@pytest.mark.parametrize(
    "call",
    [
        lambda e, a: psi(e, a),
        lambda e, a: js_distance(e, a),
        lambda e, a: ks_binned(e, a),
        lambda e, a: linf(e, a),
        lambda e, a: chi2_pvalue(e, a),
        lambda e, a: wasserstein_binned(e, a, [0.0, 1.0, 2.0], 1.0),
    ],
)
@pytest.mark.parametrize(
    ("expected", "actual"), [([0, 0, 0], [1, 2, 3]), ([1, 2, 3], [0, 0, 0]), ([0, 0, 0], [0, 0, 0])]
)
def test_empty_side_gives_nan_without_warnings(call, expected, actual):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(call(expected, actual))


@pytest.mark.parametrize("func", [*SYMMETRIC, chi2_pvalue])
def test_rejects_mismatched_or_negative_counts(func):
    with pytest.raises(ValueError, match="length"):
        func([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        func([1, -2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        func([1, math.inf], [1, 2])


# ----------------------------------------------------------------- registry


def test_registry_defaults():
    kinds = {name: stat.kinds for name, stat in STATISTICS.items()}
    numeric = {name for name, kind in kinds.items() if "numeric" in kind}
    categorical = {name for name, kind in kinds.items() if "categorical" in kind}
    assert numeric == {"psi", "js", "ks", "wasserstein"}
    assert categorical == {"chi2", "js", "linf", "psi"}
    expected = {
        "psi": (0.1, 0.25, True),
        "js": (0.1, 0.2, True),
        "ks": (0.1, 0.2, True),
        "wasserstein": (0.1, 0.25, True),
        "chi2": (0.001, 1e-6, False),
        "linf": (0.3, 0.5, True),
    }
    for name, (threshold, critical, higher) in expected.items():
        stat = STATISTICS[name]
        assert stat.name == name
        assert (stat.threshold, stat.critical, stat.higher_is_drift) == (
            threshold,
            critical,
            higher,
        )
        assert stat.source
    assert "Siddiqi" in STATISTICS["psi"].source
    assert "Vertex" in STATISTICS["linf"].source
    assert "Evidently" in STATISTICS["wasserstein"].source


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        STATISTICS["psi"] = STATISTICS["js"]  # type: ignore[index]


def test_compute_dispatches():
    left, right = [10, 30, 60], [25, 25, 50]
    assert compute("psi", left, right) == psi(left, right)
    assert compute("js", left, right) == js_distance(left, right)
    assert compute("ks", left, right) == ks_binned(left, right)
    assert compute("linf", left, right) == linf(left, right)
    assert compute("chi2", left, right) == chi2_pvalue(left, right)
    points = [0.0, 1.0, 2.0]
    assert compute("wasserstein", left, right, points=points, scale=2.0) == wasserstein_binned(
        left, right, points, 2.0
    )
    for name in STATISTICS:
        kwargs = {"points": points} if name == "wasserstein" else {}
        assert math.isfinite(compute(name, left, right, **kwargs))


def test_compute_rejects_unknown_and_missing_points():
    with pytest.raises(ValueError, match="'kl'"):
        compute("kl", [1], [1])
    with pytest.raises(ValueError, match="points"):
        compute("wasserstein", [1, 1], [1, 1])


def test_crossed_and_severity():
    psi_stat, chi2_stat = STATISTICS["psi"], STATISTICS["chi2"]
    assert crossed(psi_stat, 0.1, 0.1)
    assert not crossed(psi_stat, 0.0999, 0.1)
    assert crossed(chi2_stat, 0.0009, 0.001)
    assert not crossed(chi2_stat, 0.001, 0.001)
    assert not crossed(psi_stat, math.nan, 0.1)
    assert not crossed(chi2_stat, math.nan, 0.001)
    assert [severity(psi_stat, v) for v in (0.0, 0.1, 0.24, 0.25, math.nan)] == [
        "ok",
        "warning",
        "warning",
        "critical",
        "ok",
    ]
    assert [severity(chi2_stat, v) for v in (0.5, 1e-4, 1e-7, math.nan)] == [
        "ok",
        "warning",
        "critical",
        "ok",
    ]


def test_statistic_is_frozen():
    stat = Statistic("x", frozenset({"numeric"}), 1.0, 2.0, True, "test")
    with pytest.raises(AttributeError):
        stat.threshold = 3.0  # type: ignore[misc]
