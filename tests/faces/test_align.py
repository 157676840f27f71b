import numpy as np
import pytest

from core.faces.align import ARCFACE_TEMPLATE_112, align_face, estimate_similarity, realign, template_for_size
from core.types import DetectedFace, Detection


def _similarity(scale, angle, tx, ty):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    m = _similarity(0.7, 0.3, 12.0, -5.0)
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(estimate_similarity(src, dst), m, atol=1e-9)


def test_reflection_is_not_used():
    src = np.array([[0, 0], [1, 0], [0, 1.0]])
    dst = src * [-1, 1]  # a mirror image: no similarity maps it exactly
    m = estimate_similarity(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


def test_bad_points():
    with pytest.raises(ValueError):
        estimate_similarity(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE_112)


@pytest.mark.parametrize("size", [112, 160, 224, 64])
def test_alignment_puts_landmarks_on_the_template(size):
    rng = np.random.default_rng(size)
    image = rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)
    m = _similarity(2.5, -0.2, 40.0, 60.0)  # template -> image
    landmarks = ARCFACE_TEMPLATE_112 @ m[:, :2].T + m[:, 2]
    det = Detection(DetectedFace(np.array([0, 0, 300, 300.0]), landmarks, 0.99), (), (300, 400))
    face = align_face(image, det, size)
    assert face.image.shape == (size, size, 3) and face.image.dtype == np.uint8
    np.testing.assert_allclose(face.landmarks, template_for_size(size), atol=1e-3)
    # the inverse transform maps crop points back to the source
    back = np.hstack([face.landmarks, np.ones((5, 1))]) @ face.inverse_transform.T
    np.testing.assert_allclose(back, landmarks, atol=1e-3)
    # realigning to another size works from the source image
    other = realign(face, 96)
    np.testing.assert_allclose(other.landmarks, template_for_size(96), atol=1e-3)
