"""The behaviour the papers report, on real faces: the cut-and-paste experiment of the X-Map
paper, and genuine pairs explained as more similar than impostor pairs."""

from __future__ import annotations

import numpy as np
import pytest

from core.data import read_labelled_pairs
from core.evaluate.maps import map_means, pick_pairs
from core.explainers import occlusion, perturb
from core.types import FacePair

from ..conftest import DEEPFACE, MISC

METHODS = ["xmap1", "xmap2", "xmap3", "single_removal", "greedy_removal", "single_aggregation", "greedy_aggregation", "minplus_average"]


def _eye_band(face) -> tuple[slice, slice]:
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    iod = rx - lx
    y = (ly + ry) / 2
    return slice(int(y - 0.35 * iod), int(y + 0.3 * iod)), slice(int(lx - 0.5 * iod), int(rx + 0.5 * iod) + 1)


def _pasted_eyes(runner):
    """obama (a), obama with biden's eye band pasted in (a2), biden (b), and the band's mask
    (aligned crops share the template, so the band is co-located)."""
    a = runner.prepare(MISC / "obama.jpg")
    b = runner.prepare(MISC / "biden.jpg")
    rows, cols = _eye_band(a)
    pasted = a.image.copy()
    pasted[rows, cols] = b.image[rows, cols]
    a2 = type(a)(image=pasted, landmarks=a.landmarks, box=a.box, transform=a.transform)
    inside = np.zeros(a.image.shape[:2], bool)
    inside[rows, cols] = True
    return a, a2, b, inside


@pytest.mark.slow
@pytest.mark.needs_data
def test_cut_and_paste_eyes_are_explained_as_similar(runner):
    """Paste the eye region of face B into face A (aligned crops share the template, so the
    region is co-located): the method-3 X-Map of (A', B) is higher inside it than outside."""
    a, a2, b, inside = _pasted_eyes(runner)
    perturb.clear_cache()
    maps = occlusion.xmaps(FacePair(a2, b), runner.embedder, (3,), occlusion.XMapParams())[3]["maps"]
    assert maps[0][inside].mean() > maps[0][~inside].mean() + 0.1
    # without the paste, the eye band is not singled out that way
    perturb.clear_cache()
    plain = occlusion.xmaps(FacePair(a, b), runner.embedder, (3,), occlusion.XMapParams())[3]["maps"][0]
    assert maps[0][inside].mean() - maps[0][~inside].mean() > plain[inside].mean() - plain[~inside].mean()


@pytest.mark.slow
@pytest.mark.needs_data
def test_genuine_pairs_have_higher_maps_than_impostor_pairs(runner):
    csv = DEEPFACE / "pairs.csv"
    pairs, _ = read_labelled_pairs(csv)
    perturb.clear_cache()
    res = map_means(runner, pick_pairs(pairs, 6), DEEPFACE, csv, METHODS, progress=False, preset="fast")
    assert not res.failed
    rows = {r["method"]: r for r in res.summary()}
    assert set(rows) == set(METHODS)
    for m, r in rows.items():
        assert r["n_genuine"] == 6 and r["n_impostor"] == 6
        assert r["separated"], (m, r)


@pytest.mark.needs_data
@pytest.mark.parametrize("method", ["cam", "grad_cam", "grad_cam_pp"])
def test_cut_and_paste_eyes_raise_the_class_activation_maps(runner, method):
    """The cut-and-paste experiment for the gradient/activation maps: after pasting face B's
    eyes into face A, A's map (against B) rises inside the eye band relative to outside."""
    a, a2, b, inside = _pasted_eyes(runner)

    def contrast(pair: FacePair) -> float:
        m = runner.explain(pair, methods=[method]).explanations[0].maps[0]
        m = m / np.abs(m).max()
        return float(m[inside].mean() - m[~inside].mean())

    assert contrast(FacePair(a2, b)) > contrast(FacePair(a, b)) + 0.02  # measured: +0.26, +0.10, +0.025
