"""Faithfulness metrics on the toy black-box embedder, whose embedding is
``normalise([mean of the square (8:16, 8:16), 0.1])``: a map that ranks that square first
is the right explanation, so its curves are known in closed form."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.data import LabelledPair
from core.errors import NoFaceError
from core.evaluate import faithfulness as fm
from core.types import AlignedFace, Explanation, FacePair
from tests.explainers.conftest import RegionEmbedder, toy_face

SIZE = 32
REGION = np.zeros((SIZE, SIZE), np.float32)
REGION[8:16, 8:16] = 1.0  # where the toy embedder looks
THR = 0.9


def region_face(value: int, background: int = 0) -> AlignedFace:
    """A toy face whose embedder region is ``value`` on a ``background``."""
    f = toy_face(SIZE, background)
    img = f.image.copy()
    img[8:16, 8:16] = value
    return replace(f, image=img)


def embedding(value: float) -> np.ndarray:
    v = np.array([value / 255, 0.1])
    return v / np.linalg.norm(v)


class FakeRunner:
    """What ``faithfulness`` needs of a Runner: ``prepare`` gives a toy face by file name
    (unknown names have no face), ``explain`` returns maps chosen per method name:
    ``region``/``inverted`` (unsigned), ``signed_region`` (+1 on the region, -1 elsewhere),
    ``boom`` fails."""

    def __init__(self, faces: dict[str, AlignedFace], threshold: float = THR) -> None:
        self.embedder = RegionEmbedder(SIZE)
        self.faces = faces
        self.threshold = threshold
        self.calls: list[tuple[list[str], dict]] = []
        self.prepared: list[str] = []

    def prepare(self, src, name=None) -> AlignedFace:
        self.prepared.append(str(name))
        key = Path(src).name
        if key not in self.faces:
            raise NoFaceError(f"no face found in {name}")
        return self.faces[key]

    def explain(self, pair, methods=(), **knobs):
        methods = list(methods)
        self.calls.append((methods, knobs))
        maps = {"region": (REGION, False), "inverted": (1 - REGION, False), "signed_region": (2 * REGION - 1, True)}
        out = []
        for m in methods:
            if m in maps:
                out.append(Explanation(m, m, maps=[maps[m][0].copy(), maps[m][0].copy()], signed=maps[m][1]))
            else:
                out.append(Explanation(m, m, error="kaboom"))
        return SimpleNamespace(threshold=self.threshold, explanations=out)


FACES = {"bright.png": region_face(255), "bright2.png": region_face(250), "bright3.png": region_face(240),
         "dim.png": region_face(21), "dim2.png": region_face(25)}  # fmt: skip
PAIRS = [
    LabelledPair("bright.png", "bright2.png", True),  # accepted (sim ~1)
    LabelledPair("dim.png", "dim2.png", True),  # accepted (sim ~0.996)
    LabelledPair("bright.png", "dim.png", False),  # rejected (sim ~0.71)
    LabelledPair("bright2.png", "dim2.png", False),  # rejected (sim ~0.77)
    LabelledPair("bright2.png", "bright3.png", False),  # an impostor pair the model accepts
    LabelledPair("bright.png", "noface.png", True),  # no face: left out
]


# -- building blocks -------------------------------------------------------------------------
def test_pixel_order_is_descending_with_seeded_ties():
    r = np.array([[0.1, 0.9], [0.5, 0.3]])
    assert fm.pixel_order(r).tolist() == [1, 2, 3, 0]
    rng = np.random.default_rng(3)
    r = rng.integers(0, 5, size=(10, 10)).astype(np.float32)  # many ties
    o = fm.pixel_order(r, seed=7)
    assert sorted(o.tolist()) == list(range(100)) and np.all(np.diff(r.ravel()[o]) <= 0)
    flat = np.ones((16, 16))
    o0, o0b, o1 = fm.pixel_order(flat, 0), fm.pixel_order(flat, 0), fm.pixel_order(flat, 1)
    assert np.array_equal(o0, o0b) and not np.array_equal(o0, o1)
    assert not np.array_equal(o0, np.arange(256))  # a constant map gives a random order


def test_curve_masks_count_complement_and_nest():
    size, n = 7, 49
    order = fm.pixel_order(np.random.default_rng(0).random((size, size)))
    fr = np.array([0.0, 0.13, 0.25, 0.5, 0.77, 1.0])
    dele = fm.curve_masks(order, size, fr, "deletion")
    ins = fm.curve_masks(order, size, fr, "insertion")
    assert dele.shape == (6, size, size) and dele.dtype == np.float32
    assert [int(m.sum()) for m in dele] == [round(f * n) for f in fr]
    assert np.array_equal(ins, 1 - dele)
    assert np.all(np.diff(dele.reshape(6, -1), axis=0) >= 0)  # nested: hidden stays hidden
    k = round(0.25 * n)
    assert set(np.flatnonzero(dele[2].ravel())) == set(order[:k].tolist())


def test_fractions_always_include_the_top_share():
    assert np.allclose(fm.resolve_fractions(), np.linspace(0, 1, 11))
    f = fm.resolve_fractions(None, 0.25)
    assert len(f) == 12 and 0.25 in f and np.all(np.diff(f) > 0)
    with pytest.raises(ValueError):
        fm.resolve_fractions([0, 1.5])


def test_relevance_of_negates_signed_maps_of_rejected_pairs_only():
    m = np.array([[1.0, -1.0]], np.float32)
    assert np.array_equal(fm.relevance_of(m, signed=True, accept=False), -m)
    assert np.array_equal(fm.relevance_of(m, signed=True, accept=True), m)
    assert np.array_equal(fm.relevance_of(m, signed=False, accept=False), m)


def test_random_maps_are_reproducible_and_differ_by_face_and_pair():
    a0, b0 = fm.random_maps(SIZE, seed=1, pair_index=0)
    a0b, _ = fm.random_maps(SIZE, seed=1, pair_index=0)
    a1, _ = fm.random_maps(SIZE, seed=1, pair_index=1)
    assert np.array_equal(a0, a0b) and not np.array_equal(a0, b0) and not np.array_equal(a0, a1)
    assert a0.shape == (SIZE, SIZE) and a0.min() >= 0 and a0.max() < 1
    # "random CAM" blobs, not per-pixel noise: neighbouring pixels are close
    big = fm.random_maps(112, seed=1)[0]
    assert np.abs(np.diff(big, axis=0)).mean() < 0.05 and big.std() > 0.1


def test_eer_threshold_separates_separable_scores():
    s = np.array([0.9, 0.1, 0.8, 0.2, 0.75])
    y = np.array([True, False, True, False, True])
    t = fm.eer_threshold(s, y)
    assert np.array_equal(s >= t, y)
    assert np.isnan(fm.eer_threshold(s, np.ones(5, bool)))


# -- one pair --------------------------------------------------------------------------------
def test_the_right_map_beats_random_and_the_inverted_map():
    emb = RegionEmbedder(SIZE)
    pair = FacePair(region_face(255), region_face(255))  # accepted: similarity 1
    right = fm.pair_faithfulness(emb, pair, [REGION, REGION], False, THR)
    wrong = fm.pair_faithfulness(emb, pair, [1 - REGION, 1 - REGION], False, THR)
    rand = fm.random_pair_faithfulness(emb, pair, THR)
    assert right.accept and right.similarity == pytest.approx(1.0) and rand.method == "random"
    r, w, x = right.scores(), wrong.scores(), rand.scores()
    assert set(r) == {"deletion_auc", "insertion_auc", "confidence_drop_pct", "prediction_change_pct"}
    # closed form: hiding 10 % (102 px) hides the 64 px region -> similarity [0, 1] . [.995, .0995]
    hidden = float(embedding(255) @ embedding(0))
    assert right.a.similarity_at(0.1) == pytest.approx(hidden, abs=1e-4)
    assert right.a.similarity_at(0.0) == right.a.s0  # nothing hidden: the clean similarity, exactly
    assert r["deletion_auc"] < x["deletion_auc"] - 0.2 and r["deletion_auc"] < w["deletion_auc"] - 0.5
    assert r["insertion_auc"] > x["insertion_auc"] + 0.02 and r["insertion_auc"] > w["insertion_auc"] + 0.5
    assert r["confidence_drop_pct"] == pytest.approx((1 - hidden) * 100, abs=0.1)
    assert x["confidence_drop_pct"] < r["confidence_drop_pct"] - 5 and w["confidence_drop_pct"] == pytest.approx(0, abs=1e-3)
    assert r["prediction_change_pct"] == 100 and x["prediction_change_pct"] < 100 and w["prediction_change_pct"] == 0
    # the margin area is the trapezoid of sign * (s - thr)
    assert right.a.deletion_area == pytest.approx(np.trapezoid(right.a.deletion - THR, right.fractions))


def test_maps_are_resized_to_the_model_input():
    emb = RegionEmbedder(SIZE)
    pair = FacePair(region_face(255), region_face(255))
    big = np.kron(REGION, np.ones((2, 2), np.float32))  # 64 x 64
    small = fm.pair_faithfulness(emb, pair, [REGION, REGION], False, THR).scores()
    resized = fm.pair_faithfulness(emb, pair, [big, big], False, THR).scores()
    assert resized["deletion_auc"] == pytest.approx(small["deletion_auc"], abs=0.02)


def test_a_signed_map_of_a_rejected_pair_is_ranked_negated():
    emb = RegionEmbedder(SIZE)
    pair = FacePair(region_face(255), region_face(21))  # similarity ~0.71 < 0.9: reject
    m = 2 * REGION - 1  # +1 on the region (similar), -1 elsewhere
    signed = fm.pair_faithfulness(emb, pair, [m, m], True, THR)
    unsigned = fm.pair_faithfulness(emb, pair, [m, m], False, THR)
    assert not signed.accept and signed.similarity == pytest.approx(float(embedding(255) @ embedding(21)), abs=1e-4)
    # negated: the background goes first, the region is untouched at 20 %
    assert signed.a.similarity_at(0.2) == pytest.approx(signed.a.s0, abs=1e-6)
    # as is: the region goes first
    assert unsigned.a.similarity_at(0.2) == pytest.approx(float(embedding(0) @ embedding(21)), abs=1e-4)
    # on a rejected pair, a lower deletion margin means the similarity rose (y = -(s - thr))
    assert unsigned.a.deletion_area < signed.a.deletion_area
    assert np.isnan(signed.scores()["confidence_drop_pct"])  # no accepted probe


def test_the_tnr_masks_both_faces():
    """Each face alone, masked, stays rejected; both masked become equal: accepted."""
    emb = RegionEmbedder(SIZE)
    thr = float(np.cos(np.radians(30)))
    pair = FacePair(region_face(255), region_face(21))  # 84.3 and 39.5 degrees apart from [1, 0]
    res = fm.pair_faithfulness(emb, pair, [REGION, REGION], False, thr)
    assert not res.accept
    assert np.all(res.a.deletion < thr) and np.all(res.b.deletion < thr)  # one face masked: still rejected
    both = res.both_masked_similarity()
    assert both[0] == pytest.approx(res.similarity, abs=1e-6) and np.all(both[1:] > 0.999)
    rec = fm.PairRecord(0, "x", "y", False, res)
    _, curves = fm.method_figures([rec], res.fractions, 0.2)
    assert curves["tnr"].tolist() == [1.0] + [0.0] * (len(res.fractions) - 1)


# -- a data set ------------------------------------------------------------------------------
def test_the_dataset_loop(tmp_path):
    runner = FakeRunner(FACES)
    rep = fm.faithfulness(runner, PAIRS, tmp_path, tmp_path / "pairs.csv", ["signed_region", "boom", "region"], progress=False,
                          preset="fast", gallery="g/", seed=3)  # fmt: skip
    rows = rep.rows()
    assert [r["method"] for r in rows] == ["signed_region", "boom", "region", "random"]
    assert all(set(r) == set(fm.ROW_KEYS) for r in rows)
    by = {r["method"]: r for r in rows}
    assert len(rep.failed) == 1 and rep.failed[0][0].file_y == "noface.png" and "no face" in rep.failed[0][1]
    assert by["boom"]["n_failed"] == 5 and by["boom"]["n_pairs"] == 0 and np.isnan(by["boom"]["deletion_auc"])
    assert by["region"]["n_pairs"] == by["random"]["n_pairs"] == 5 and by["random"]["n_failed"] == 0
    assert runner.prepared.count("bright.png") == 1  # each image prepared once
    methods, knobs = runner.calls[0]
    assert methods == ["signed_region", "boom", "region"] and knobs == {"preset": "fast", "gallery": "g/", "seed": 3}
    good, rand = by["signed_region"], by["random"]
    assert good["deletion_auc"] < rand["deletion_auc"] - 0.2 and good["insertion_auc"] > rand["insertion_auc"] + 0.05
    assert good["recall_auc"] < rand["recall_auc"] - 0.5 and good["confidence_drop_pct"] > rand["confidence_drop_pct"] + 50
    assert 0 <= good["fame_deletion_nauc"] <= 1 and 0 <= good["fame_insertion_nauc"] <= 1
    # an unsigned map of rejected pairs ranks the region first: both faces lose it and match
    assert by["region"]["tnr_auc"] < 0.1 < good["tnr_auc"]

    # FAME at fraction 0 (nothing hidden) is the clean accuracy at the EER threshold
    clean = np.array([float(embedding(FACES[p.file_x].image[8, 8, 0]) @ embedding(FACES[p.file_y].image[8, 8, 0])) for p in PAIRS[:5]])
    same = np.array([p.same for p in PAIRS[:5]])
    eer_thr = fm.eer_threshold(clean, same)
    assert good["eer_threshold"] == pytest.approx(eer_thr, abs=1e-5)
    acc = float(((clean >= eer_thr) == same).mean())
    assert acc < 1  # the accepted impostor
    curves = rep.curves()
    assert {c["curve"] for c in curves} == set(fm.CURVE_NAMES)
    for method in ("signed_region", "random"):
        point = {(c["curve"], c["fraction"]): c["value"] for c in curves if c["method"] == method}
        assert point[("fame_deletion_accuracy", 0.0)] == pytest.approx(acc)
        assert point[("fame_insertion_accuracy", 1.0)] == pytest.approx(acc)
        assert point[("recall", 0.0)] == 1.0 and point[("tnr", 0.0)] == 1.0

    rows_path, curves_path = rep.to_csv(tmp_path / "out" / "faith.csv")
    assert curves_path == tmp_path / "out" / "faith_curves.csv"
    with open(rows_path, newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == list(fm.ROW_KEYS) and got[-1]["method"] == "random"
    with open(curves_path, newline="") as f:
        assert next(csv.reader(f)) == ["method", "curve", "fraction", "value"]

    table = rep.table().splitlines()
    assert table[0].split()[0] == "method" and "↓" in table[1] and "↑" in table[1]
    assert [line.split()[0] for line in table[2:6]] == ["signed_region", "boom", "region", "random"]
    assert "n/a" in table[3] and "baseline" in table[-1]
