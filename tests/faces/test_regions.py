import dataclasses
import sys

import numpy as np
import pytest

from core.errors import InvalidParameterError, ModelUnavailableError
from core.faces import regions
from core.faces.align import realign, template_for_size
from core.faces.regions import REGION_LABELS, REGIONS, RegionMasks, landmarks68, region_masks
from core.types import AlignedFace


def _synthetic(size=112, angle_deg=0.0):
    """A blank crop whose landmarks are the template, optionally rotated about the centre."""
    lm = template_for_size(size)
    if angle_deg:
        a = np.radians(angle_deg)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        c = np.array([size / 2, size / 2])
        lm = (lm - c) @ r.T + c
    return AlignedFace(np.zeros((size, size, 3), np.uint8), lm.astype(np.float32), np.zeros(4), np.hstack([np.eye(2), np.zeros((2, 1))]))


def _has(masks: RegionMasks, name: str, pt) -> bool:
    x, y = (round(float(v)) for v in pt)
    return bool(masks.mask(name)[y, x])


def _centroid(masks: RegionMasks, name: str) -> np.ndarray:
    ys, xs = np.nonzero(masks.mask(name))
    return np.array([xs.mean(), ys.mean()])


def _check_layout(face: AlignedFace, m: RegionMasks):
    """Where each region must be, relative to the five landmarks of ``face``."""
    lm = face.landmarks
    assert m.labels.shape == (face.size, face.size) and m.labels.dtype == np.int16
    assert m.labels.min() >= 0 and m.labels.max() <= len(REGIONS)
    assert m.names == REGIONS  # every region is there and non-empty
    for name in REGIONS:
        assert m.mask(name).sum() > 0.002 * face.size**2, name
    # the subject's right eye is the one on the image's left
    assert _has(m, "right_eye", lm[0]) and _has(m, "left_eye", lm[1])
    assert not _has(m, "left_eye", lm[0])
    assert _has(m, "nose", lm[2])
    assert _has(m, "mouth", (lm[3] + lm[4]) / 2)
    c = {name: _centroid(m, name) for name in REGIONS}
    assert c["right_eye"][0] < c["left_eye"][0] and c["right_eyebrow"][0] < c["left_eyebrow"][0] and c["right_cheek"][0] < c["left_cheek"][0]
    eye_y = lm[:2, 1].mean()
    assert c["forehead"][1] < c["left_eyebrow"][1] < eye_y and c["forehead"][1] < c["right_eyebrow"][1] < eye_y
    assert c["chin"][1] > c["mouth"][1] > c["nose"][1] > eye_y
    assert c["right_cheek"][0] < lm[2, 0] < c["left_cheek"][0]
    assert eye_y < c["left_cheek"][1] < lm[3:, 1].mean()


def test_region_keys():
    assert REGIONS[0] == "forehead" and REGIONS[-1] == "chin" and len(REGIONS) == 10 == len(set(REGIONS))
    assert REGION_LABELS["left_eye"] == "left eye" and set(REGION_LABELS) == set(REGIONS)


@pytest.mark.parametrize("size", [112, 160, 224])
def test_five_point_regions_on_the_template(size):
    face = _synthetic(size)
    m = region_masks(face, landmarks="5")
    assert m.source == "five_point"
    _check_layout(face, m)


def test_five_point_regions_are_relative_to_the_landmarks():
    small, big = region_masks(_synthetic(112), "5"), region_masks(_synthetic(224), "5")
    for name in REGIONS:  # the same share of the crop at any size, and the same place
        assert small.mask(name).mean() == pytest.approx(big.mask(name).mean(), rel=0.1, abs=0.002), name
        np.testing.assert_allclose(_centroid(big, name), 2 * _centroid(small, name) + 0.5, atol=1.5)
    # a tilted face: the regions turn with it
    face = _synthetic(160, angle_deg=25)
    m = region_masks(face, "5")
    assert _has(m, "right_eye", face.landmarks[0]) and _has(m, "left_eye", face.landmarks[1]) and _has(m, "nose", face.landmarks[2])
    up = np.array([np.sin(np.radians(25)), -np.cos(np.radians(25))])  # the face's "up" in the image
    eye_c = face.landmarks[:2].mean(0)
    assert (_centroid(m, "forehead") - eye_c) @ up > 0.5 * np.linalg.norm(face.landmarks[1] - face.landmarks[0])
    assert (_centroid(m, "chin") - eye_c) @ up < 0


def test_mask_api_and_bad_arguments():
    m = region_masks(_synthetic(), "5")
    other = m.mask("other")
    assert other.any() and not (other & m.mask("nose")).any()
    stacked = np.stack([m.mask(n) for n in (*REGIONS, "other")])
    assert (stacked.sum(0) == 1).all()  # one label per pixel
    with pytest.raises(KeyError):
        m.mask("ear")
    with pytest.raises(InvalidParameterError, match="landmarks='106' is not allowed: landmarks must be one of 'auto', '68', '5'"):
        region_masks(_synthetic(), landmarks="106")
    bad = dataclasses.replace(_synthetic(), landmarks=np.full((5, 2), 50.0, np.float32))
    with pytest.raises(ValueError, match="coincide"):
        region_masks(bad, "5")


def test_without_dlib_auto_falls_back_and_68_says_what_to_install(monkeypatch):
    monkeypatch.setattr(regions, "_predictor", None)
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    face = _synthetic()
    assert landmarks68(face) is None
    assert region_masks(face).source == "five_point"
    with pytest.raises(ModelUnavailableError, match="pip install"):
        region_masks(face, landmarks="68")


@pytest.mark.needs_data
def test_five_point_regions_on_a_real_face(obama_pair):
    face = obama_pair.a
    m = region_masks(face, "5")
    _check_layout(face, m)
    big = realign(face, 224)
    m2 = region_masks(big, "5")
    _check_layout(big, m2)
    for name in REGIONS:
        assert m2.mask(name).mean() == pytest.approx(m.mask(name).mean(), rel=0.1, abs=0.002), name


@pytest.fixture(scope="module")
def dlib_face(obama_pair):
    pytest.importorskip("dlib")
    face = obama_pair.a
    pts = landmarks68(face)
    if pts is None:
        pytest.skip("dlib's 68-point model file is not installed")
    return face, pts


@pytest.mark.needs_data
def test_68_points_land_on_the_face(dlib_face):
    face, pts = dlib_face
    lm = face.landmarks
    d = float(np.linalg.norm(lm[1] - lm[0]))
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    # iBUG indices: 36-41 the eye on the image's left, 42-47 the other, 30 nose tip, 48/54 mouth corners
    assert np.linalg.norm(pts[36:42].mean(0) - lm[0]) < 0.12 * d
    assert np.linalg.norm(pts[42:48].mean(0) - lm[1]) < 0.12 * d
    assert np.linalg.norm(pts[30] - lm[2]) < 0.15 * d
    assert np.linalg.norm(pts[48] - lm[3]) < 0.15 * d and np.linalg.norm(pts[54] - lm[4]) < 0.15 * d
    assert pts[8, 1] > lm[3:, 1].max() + 0.4 * d  # the chin point is well below the mouth
    assert pts[19, 1] < lm[0, 1] and pts[24, 1] < lm[1, 1]  # brows above the eyes
    # without the source image, on the upscaled crop: the same face points
    from_crop = landmarks68(dataclasses.replace(face, source=None))
    assert np.abs(from_crop[17:] - pts[17:]).max() < 0.15 * d


@pytest.mark.needs_data
def test_68_point_regions(dlib_face):
    face, pts = dlib_face
    m = region_masks(face, landmarks="68")
    assert m.source == "dlib68"
    _check_layout(face, m)
    assert region_masks(face).source == "dlib68"  # "auto" takes dlib when it is there
    d = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
    assert np.linalg.norm(_centroid(m, "right_eye") - face.landmarks[0]) < 0.12 * d
    assert np.linalg.norm(_centroid(m, "left_eye") - face.landmarks[1]) < 0.12 * d
    for i in (*range(36, 42), 30, 51, 57):  # the eye contour, nose tip and the lips' middle
        name = "nose" if i == 30 else "mouth" if i > 47 else "right_eye"
        assert _has(m, name, pts[i]), (i, name)
    # the 5-point and 68-point versions broadly agree
    five = region_masks(face, "5")
    for name in ("right_eye", "left_eye", "nose", "mouth"):
        a, b = m.mask(name), five.mask(name)
        assert (a & b).sum() / (a | b).sum() > 0.3, name
