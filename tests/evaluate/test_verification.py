import numpy as np
import pytest

from core.errors import DataError
from core.evaluate.verification import eer, roc_auc, tar_at_far, verification_metrics


def test_auc_equals_the_pairwise_probability():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(np.where(y, rng.normal(0.6, 0.2, 300), rng.normal(0.2, 0.2, 300)), 2)  # with ties
    pos, neg = s[y], s[~y]
    brute = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert roc_auc(s, y) == pytest.approx(brute)


def test_eer_and_tar_on_a_hand_made_case():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    # accepting the top 4 scores: FAR = 1/4, FRR = 1/4
    assert eer(s, y) == pytest.approx(0.25)
    assert tar_at_far(s, y, 0.0) == pytest.approx(0.75)
    assert tar_at_far(s, y, 1e-3) == pytest.approx(0.75)
    perfect = verification_metrics(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0], bool), 0.5)
    assert perfect.roc_auc == 1.0 and perfect.eer == 0.0 and perfect.accuracy == 1.0


def test_metrics_need_both_classes():
    with pytest.raises(DataError):
        verification_metrics(np.array([0.1, 0.2]), np.array([1, 1], bool))
