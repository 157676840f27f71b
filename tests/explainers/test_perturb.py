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


def test_remember_keeps_who_computed_a_value_and_counts_each_source_once():
    perturb.clear_cache()
    one = perturb.Ledger("m1", "Method one (ref)")

    def inner() -> int:
        one.ran(5)
        return 1

    def outer() -> int:
        one.ran(3)
        return perturb.remember("t-inner", inner, one) + 1

    assert perturb.remember("t-outer", outer, one) == 2
    assert one.forward_passes == 8 and one.cached_from() is None  # all computed by this call
    value, origins = perturb.CACHE.lookup("t-outer")
    assert value == 2 and perturb.CACHE.get("t-outer") == 2  # get: the bare value, as before
    # each record holds its own passes (outer 3, inner 5), by the method that ran them
    assert {(p.key, p.method, p.forward_passes) for p in origins} == {("t-outer", "m1", 3), ("t-inner", "m1", 5)}

    two = perturb.Ledger("m2", "Two")
    assert perturb.remember("t-outer", lambda: pytest.fail("recomputed"), two) == 2
    assert perturb.remember("t-inner", lambda: pytest.fail("recomputed"), two) == 1  # served again: not counted twice
    c = two.cached_from()
    assert two.forward_passes == 0 and c["method"] == "m1" and c["label"] == "Method one (ref)" and c["forward_passes"] == 8
    assert [s["method"] for s in c["sources"]] == ["m1"] and c["runtime_s"] >= 0
    assert two.cache_hits == 2 and two.cached_passes == 8 and two.cached_by == {"m1": 8}

    # a call reading back what it computed itself was not served from the cache
    three = perturb.Ledger("m3")
    perturb.remember("t-x", lambda: (three.ran(2), 7)[1], three)
    assert perturb.remember("t-x", lambda: pytest.fail("recomputed"), three) == 7
    assert three.cached_from() is None and three.forward_passes == 2
    assert three.cache_hits == 1 and three.cached_passes == 0 and three.cached_by == {}
    perturb.clear_cache()


def test_a_perturber_counts_its_passes_on_its_ledger():
    from .conftest import RegionEmbedder

    ledger, other = perturb.Ledger("m"), perturb.Ledger("n")
    p = perturb.Perturber(RegionEmbedder(), np.full((32, 32, 3), 200, np.uint8), batch_size=3, ledger=ledger)
    p.embed(torch.zeros((7, 32, 32)))
    perturb.embed_faces(RegionEmbedder(), [np.zeros((32, 32, 3), np.uint8)] * 2, ledger=ledger)
    perturb.embed_faces(RegionEmbedder(), [np.zeros((32, 32, 3), np.uint8)], ledger=other)
    assert ledger.forward_passes == 9 and other.forward_passes == 1  # each ledger its own passes only
    assert ledger.cache_hits == 0 and ledger.cached_passes == 0 and ledger.cached_by == {}
    assert not hasattr(perturb, "STATS")  # no process-global counter to read as a before/after difference
