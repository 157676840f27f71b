import numpy as np
import pytest

from core.errors import CalibrationError
from core.verify.threshold import best_threshold, cv_threshold


def _brute(d, y):
    cands = np.concatenate([[d.min() - 1], (np.sort(d)[1:] + np.sort(d)[:-1]) / 2, [d.max()]])
    return max(((d <= t) == y).mean() for t in cands)


def test_best_threshold_is_the_exact_maximum():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(60) < 0.3
        d = np.where(y, rng.normal(0.4, 0.15, 60), rng.normal(0.8, 0.15, 60))
        t, acc = best_threshold(d, y)
        assert acc == pytest.approx(_brute(d, y))
        assert ((d <= t) == y).mean() == pytest.approx(acc)


def test_separable_data_threshold_falls_in_the_gap():
    d = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    y = np.array([1, 1, 1, 0, 0], bool)
    t, acc = best_threshold(d, y)
    assert acc == 1.0 and 0.3 < t < 0.7 and t == pytest.approx(0.5)


def test_cv_threshold():
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.5
    d = np.where(y, rng.normal(0.3, 0.1, 400), rng.normal(0.7, 0.1, 400))
    cv = cv_threshold(d, y)
    assert len(cv.fold_thresholds) == 10
    assert 0.4 < cv.threshold < 0.6
    assert 0.9 < cv.accuracy <= 1.0
    with pytest.raises(CalibrationError, match="genuine"):
        cv_threshold(d[:15], y[:15])
