from __future__ import annotations

import cv2
import numpy as np

from core import render


def _face() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(30, 220, size=(32, 32, 3), dtype=np.uint8)


def test_blend_keeps_the_lightness_and_colours_by_sign():
    img = _face()
    m = np.zeros((32, 32), np.float32)
    m[:, :16] = 1.0  # similar: green
    m[:, 16:] = -1.0  # dissimilar: red
    out = render.blend_signed(img, m)
    assert out.shape == img.shape and out.dtype == np.uint8
    l_in = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2HLS)[..., 1]
    l_out = cv2.cvtColor(out.astype(np.float32) / 255, cv2.COLOR_RGB2HLS)[..., 1]
    assert np.abs(l_in - l_out).max() < 0.01  # Algorithm 2 keeps the face's lightness
    left, right = out[:, :16].astype(int), out[:, 16:].astype(int)
    assert (left[..., 1] > left[..., 0]).mean() > 0.95  # green dominates
    assert (right[..., 0] > right[..., 1]).mean() > 0.95  # red dominates


def test_colour_map_ends_and_middle():
    c = render.diverging_colours(np.array([-1.0, 0.0, 1.0]))
    assert c[0, 0] > c[0, 1] and c[2, 1] > c[2, 0]  # red, then green
    assert np.all(c[1] > 0.7)  # pale in the middle


def test_normalisation_and_overlay():
    m = np.array([[-2.0, 1.0], [0.0, 0.5]])
    n = render.normalise_signed(m)
    assert n.min() == -1 and n[1, 0] == 0
    assert render.normalise_unsigned(np.ones((2, 2))).max() == 0
    img = _face()
    out = render.heat_overlay(img, np.random.default_rng(1).random((8, 8)))  # resized to the face
    assert out.shape == img.shape
    both = render.side_by_side([img, out, img[:16, :16]])
    assert both.shape[0] == 32 and both.shape[1] == 32 + 4 + 32 + 4 + 32


def test_lightness_overlay_ignores_the_faces_colours():
    grey = np.full((16, 16, 3), 120, np.uint8)
    tinted = grey.copy()
    tinted[..., 0] += 40
    tinted[..., 1] -= 20  # another colour, the same luma (0.299 * 40 = 0.587 * 20)
    m = np.zeros((16, 16), np.float32)
    m[4:8, 4:8] = 1.0
    a, b = render.lightness_overlay(grey, m), render.lightness_overlay(tinted, m)
    assert a.shape == grey.shape and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3  # only the face's lightness shows through
    assert (a[5, 5, 0] > a[5, 5, 2]) and (a[12, 12, 2] > a[12, 12, 0])  # hot inside the map, cold outside
    np.testing.assert_array_equal(render.render_map(grey, m, False, "lightness"), a)
    assert not np.array_equal(render.render_map(tinted, m, False), b)  # the default overlay keeps the colours


def test_draw_faces_numbers_each_box_and_highlights_the_chosen_one():
    from core.render import draw_faces

    img = np.full((400, 800, 3), 40, np.uint8)
    boxes = [np.array([500, 100, 700, 300.0]), np.array([100, 150, 220, 270.0])]
    out = draw_faces(img, boxes, chosen=1, max_side=400)  # fitted: every coordinate halves
    assert out.shape == (200, 400, 3) and img.max() == 40  # the input is left as it was
    chosen, other = (255, 215, 0), (80, 160, 255)
    assert tuple(out[100, 50]) == chosen and tuple(out[100, 250]) == other  # left edges of box 2 (chosen) and box 1
    assert tuple(out[120, 300]) == (40, 40, 40)  # inside a box: the photo
