import numpy as np
import pytest

from core.errors import CalibrationError
from core.verify.confidence import BINS, fit_cscore, ratio_histogram, sigmoid


def _overlapping(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    d = np.where(y, rng.normal(0.45, 0.12, n), rng.normal(0.85, 0.12, n))
    return d, y


def test_histogram_has_400_bins_and_the_genuine_share():
    d, y = _overlapping()
    centres, ratio, total = ratio_histogram(d, y)
    assert len(centres) == BINS == 400
    assert total.sum() == len(d)
    ok = np.isfinite(ratio)
    assert ((ratio[ok] >= 0) & (ratio[ok] <= 1)).all()
    assert ratio[ok][:5].mean() > 0.9 and ratio[ok][-5:].mean() < 0.1


def test_fit_recovers_a_known_sigmoid():
    # labels drawn from a known logistic curve of the distance
    rng = np.random.default_rng(3)
    d = rng.uniform(0, 1.4, 200_000)
    p_genuine = sigmoid(d, -1.0, 0.6, 15.0, 1.0)
    y = rng.random(d.size) < p_genuine
    cs = fit_cscore(d, y, threshold=0.6)
    assert cs.d0 == pytest.approx(0.6, abs=0.02)
    assert cs.L * cs.k == pytest.approx(-15.0, rel=0.15)
    assert cs.L + cs.b == pytest.approx(0.0, abs=0.05) and cs.b == pytest.approx(1.0, abs=0.05)


def test_cscore_lies_in_half_to_one_and_grows_away_from_the_threshold():
    d, y = _overlapping()
    t = 0.65
    cs = fit_cscore(d, y, threshold=t)
    grid = np.linspace(0, 2, 401)
    c = cs(grid)
    assert ((c >= 0.5) & (c <= 1.0)).all()
    left, right = grid <= t, grid > t
    assert np.all(np.diff(c[left]) <= 1e-12)  # more confident the further below t
    assert np.all(np.diff(c[right]) >= -1e-12)  # and the further above
    assert cs(0.1) > 0.95 and cs(1.5) > 0.95 and cs(t) < 0.75
    # C is the fitted probability of the decision being right: check against the data
    near = np.abs(d - 0.35) < 0.03
    assert cs(0.35) == pytest.approx(y[near].mean(), abs=0.05)


def test_needs_both_classes():
    with pytest.raises(CalibrationError):
        fit_cscore(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 1], bool), 0.5)
