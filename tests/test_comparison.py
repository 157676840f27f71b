"""Two face models on one pair (``core.comparison``): maps compared on the photo, regions in
words, faithfulness on each map's own model."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import spearmanr

from core.comparison import (
    agreement_sentence,
    compare_models,
    map_correlation,
    relied_regions,
    spearman,
    warp_between,
)
from core.types import AlignedFace, Explanation

from .conftest import MISC


def _face(size: int, scale: float, dx: float, dy: float) -> AlignedFace:
    """A face whose crop is the source photo scaled by ``scale`` and shifted by (dx, dy)."""
    m = np.array([[scale, 0.0, dx], [0.0, scale, dy]])
    return AlignedFace(np.zeros((size, size, 3), np.uint8), np.zeros((5, 2), np.float32), np.zeros(4, np.float32), m)


def _source_x(face: AlignedFace) -> np.ndarray:
    """Each crop pixel's x in the source photo: a map that is a function of the photo only."""
    ys, xs = np.mgrid[0 : face.size, 0 : face.size].astype(np.float64)
    inv = face.inverse_transform
    return (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]).astype(np.float32)


def test_spearman_is_scipys_and_none_for_a_flat_map():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(size=200)
    y[:50] = x[:50]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert spearman(np.ones(10), x[:10]) is None


def test_a_map_moves_between_crops_through_the_photo():
    small, large = _face(112, 1.0, -40.0, -30.0), _face(150, 1.25, -50.0, -40.0)
    warped, cover = warp_between(small, large, _source_x(large))
    want = _source_x(small)
    np.testing.assert_allclose(warped[cover], want[cover], atol=0.05)  # the same photo x at every covered pixel
    # the large crop shows photo rows 32..151, the small one 30..141: all but its top two rows
    assert not cover[:2].any() and cover[3:].all()


def test_maps_that_follow_the_photo_correlate_fully_and_shuffled_ones_do_not():
    small, large = _face(112, 1.0, -40.0, -30.0), _face(150, 1.25, -50.0, -40.0)
    first, second = SimpleNamespace(pair=(small, small)), SimpleNamespace(pair=(large, large))
    e1 = Explanation("m", "M", maps=[_source_x(small), _source_x(small)])
    e2 = Explanation("m", "M", maps=[_source_x(large), np.random.default_rng(1).random((150, 150)).astype(np.float32)])
    rho = map_correlation(first, second, e1, e2)
    assert rho[0] == pytest.approx(1.0, abs=1e-3) and abs(rho[1]) < 0.1


def _rows(dense: dict[str, float]) -> list[dict]:
    labels = {"eyes": "eyes", "mouth": "mouth", "nose": "nose", "other": "rest"}
    return [{"region": k, "label": labels[k], "area": 0.1, "density": dense.get(k, 0.5)} for k in labels]


def test_regions_relied_on_and_the_sentence_that_says_where_models_agree():
    a = Explanation("m", "X-Map III", maps=[], extras={"regions": [_rows({"eyes": 2.0, "mouth": 1.6, "other": 9.0}), None]})
    b = Explanation("m", "X-Map III", maps=[], extras={"regions": [_rows({"eyes": 1.7}), _rows({"nose": 3.0})]})
    ra, rb = relied_regions(a), relied_regions(b)
    assert ra == ["eyes", "mouth"] and rb == ["nose", "eyes"]  # densest first; "other" is never a region
    s = agreement_sentence("X-Map III", "sface", "dlib_resnet", ra, rb, [0.5, None])
    assert s == "X-Map III: both rely on the eyes; only sface on the mouth; only dlib_resnet on the nose."
    s = agreement_sentence("CAM", "sface", "dlib_resnet", [], [], [0.25, -0.5])
    assert "neither singles out a facial region" in s and "+0.25 and -0.50" in s


def test_compare_models_needs_two_different_models(runner):
    with pytest.raises(ValueError, match="at least two"):
        compare_models([runner], "a.jpg", "b.jpg")
    with pytest.raises(ValueError, match="each model once"):
        compare_models([runner, runner], "a.jpg", "b.jpg")


@pytest.mark.needs_data
def test_sface_and_dlib_side_by_side_on_a_real_pair(runner):
    from core import Runner

    dlib = Runner(model="dlib_resnet", device="cpu")
    cmp = compare_models([runner, dlib], MISC / "obama.jpg", MISC / "obama2.jpg", ["xmap3", "cam"], preset="fast")
    assert cmp.models == ["sface", "dlib_resnet"] and all(r.same for r in cmp.results.values())
    assert cmp.decisions().startswith("The models agree.")
    assert cmp.results["dlib_resnet"].pair.a.size == 150 and cmp.results["sface"].pair.a.size == 112
    by = {a.method: a for a in cmp.methods}
    assert set(by) == {"xmap3", "cam"}
    for a in by.values():
        first, second = cmp.results["sface"], cmp.results["dlib_resnet"]
        e1 = next(e for e in first.explanations if e.method == a.method)
        e2 = next(e for e in second.explanations if e.method == a.method)
        assert a.rank_correlation == map_correlation(first, second, e1, e2)
        assert all(r is None or -1 <= r <= 1 for r in a.rank_correlation)
        assert set(a.faithfulness) == {"sface", "dlib_resnet"} and "deletion_auc" in a.faithfulness["sface"]
        assert a.sentence.startswith(a.label)
    assert "random" in cmp.faithfulness["dlib_resnet"]
    data = cmp.to_dict()
    assert set(data["models"]) == {"sface", "dlib_resnet"} and len(data["comparison"]) == 2
