from __future__ import annotations

import numpy as np
import pytest
import torch

from core.explainers import perturb


@pytest.mark.needs_data
def test_composing_after_preprocess_equals_composing_pixels(runner, obama_pair):
    emb = runner.embedder
    assert perturb.affine_preprocess(emb)
    img = obama_pair.a.image
    masks = torch.zeros((3, 112, 112))
    masks[0, 10:40, 20:60] = 1
    masks[1, 50:, :] = 1
    masks[2] = 1
    for fill, value in (("black", 0), ("white", 255), ((10, 200, 30), (10, 200, 30))):
        p = perturb.Perturber(emb, img, fill)
        fast = p.compose(masks)
        pixels = []
        for m in masks.numpy().astype(bool):
            x = img.copy()
            x[m] = value
            pixels.append(x)
        slow = emb.preprocess(pixels)
        torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)


@pytest.mark.needs_data
def test_grey_fill_is_exact_between_levels(runner, obama_pair):
    p = perturb.Perturber(runner.embedder, obama_pair.a.image, "grey")
    lo = runner.embedder.preprocess([np.full((112, 112, 3), 127, np.uint8)])
    hi = runner.embedder.preprocess([np.full((112, 112, 3), 128, np.uint8)])
    torch.testing.assert_close(p.compose(torch.ones(1, 112, 112)), (lo + hi) / 2, atol=1e-4, rtol=0)


def test_fill_images():
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0] = 100
    assert perturb.fill_image(img, "black").max() == 0
    assert np.allclose(perturb.fill_image(img, "mean")[0, 0], [100, 0, 0])
    n1, n2 = perturb.fill_image(img, "noise", seed=1), perturb.fill_image(img, "noise", seed=1)
    assert np.array_equal(n1, n2) and n1.std() > 50
    assert np.allclose(perturb.fill_image(img, 64.0), 64)
    for bad in ("purple", 300, (1, 2)):
        with pytest.raises(ValueError):
            perturb.fill_image(img, bad)


def test_lru_cache_evicts_by_bytes():
    c = perturb.LRUCache(max_bytes=3 * 800)
    for i in range(5):
        c.put(str(i), np.zeros(100))  # 800 bytes each
    assert len(c) == 3 and c.get("0") is None and c.get("4") is not None
    c.get("2")
    c.put("5", np.zeros(100))
    assert c.get("2") is not None and c.get("3") is None


def test_digest_depends_on_content():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 1
    assert perturb.digest(a, 1) == perturb.digest(a.copy(), 1) != perturb.digest(b, 1)
    assert perturb.digest(a, 1) != perturb.digest(a, 2)
