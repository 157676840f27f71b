"""Measured facial proportions, placed in a reference population, in descriptor words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.faces import geometry as G
from core.text.descriptors import load_descriptors


def points(eye_w: float = 10.0, inner: float = 15.0, nose: float = 10.0, mouth: float = 22.0, jaw: float = 55.0, height: float = 47.0) -> np.ndarray:
    """68 points with the distances the ratios read set by hand (the others at 0)."""
    p = np.zeros((68, 2))
    p[39], p[42] = (-inner / 2, 0), (inner / 2, 0)
    p[36], p[45] = (-inner / 2 - eye_w, 0), (inner / 2 + eye_w, 0)
    p[31], p[35] = (-nose / 2, 20), (nose / 2, 20)
    p[48], p[54] = (-mouth / 2, 30), (mouth / 2, 30)
    p[1], p[15] = (-jaw / 2, 5), (jaw / 2, 5)
    p[27], p[8] = (0, -4), (0, height - 4)
    return p


def test_ratios_read_the_right_landmarks():
    r = G.ratios_68(points())
    assert r["eye_spacing"] == pytest.approx(1.5) and r["eye_size"] == pytest.approx(10 / 55)
    assert r["nose_width"] == pytest.approx(10 / 15) and r["mouth_width"] == pytest.approx(2.2)
    assert r["face_proportions"] == pytest.approx(100 * 47 / 55)
    assert G.ratios_5(np.array([[0.0, 0], [10, 0], [5, 5], [-1, 10], [11, 10]]))["mouth_to_eyes"] == pytest.approx(1.2)


def test_words_come_from_the_reference_quartiles():
    rows = [(G.ratios_68(points(inner=i)), "68") for i in np.linspace(12, 18, 41)]
    ref = G.build_reference(rows, "toy population")
    q = ref["landmarks"]["68"]["eye_spacing"]
    assert q["p25"] == pytest.approx(1.35) and q["p50"] == pytest.approx(1.5) and q["p75"] == pytest.approx(1.65)
    words = {m.key: m for m in G.describe(G.ratios_68(points(inner=18)), "68", ref)}
    assert words["eye_spacing"].band == "high" and words["eye_spacing"].word == "wide-set eyes"
    assert words["nose_width"].word == "narrow nose"  # the same nose between wider-set eyes
    assert {m.key: m.word for m in G.describe(G.ratios_68(points(inner=12)), "68", ref)}["eye_spacing"] == "close-set eyes"
    middle = {m.key: m.word for m in G.describe(G.ratios_68(points()), "68", ref)}
    assert middle["eye_spacing"] == "evenly spaced eyes" and middle["mouth_width"] is None


def test_the_shipped_reference_covers_every_measure_and_its_words_are_descriptors():
    ref = json.loads(G.REFERENCE.read_text())
    assert set(ref["landmarks"]["68"]) - {"n_faces"} == set(G.MEASURES_68) and set(ref["landmarks"]["5"]) - {"n_faces"} == set(G.MEASURES_5)
    for table in ref["landmarks"].values():
        for key, q in table.items():
            if key != "n_faces":
                assert q["p10"] <= q["p25"] <= q["p50"] <= q["p75"] <= q["p90"]
    vocabulary = set(load_descriptors().descriptors)
    words = {w for table in (G.MEASURES_68, G.MEASURES_5) for _, ws in table.values() for w in ws if w}
    assert words <= vocabulary and len(words) == 12


def test_a_missing_reference_says_how_to_build_one(tmp_path):
    from core.errors import DataError

    with pytest.raises(DataError, match="geometry-reference"):
        G.load_reference(tmp_path / "none.json")


@pytest.mark.needs_data
def test_real_faces_are_measured_and_described(obama_pair):
    from core.explainers.geometry import GeometryExplainer

    exp = GeometryExplainer().explain(obama_pair, None)
    assert exp.ok and exp.extras["landmarks"] in ("68", "5") and len(exp.text) >= 2
    assert "not of how the model decided" in exp.text[-1]
    if exp.extras["landmarks"] == "68":
        a, b = ({m["key"]: m["value"] for m in ms} for ms in exp.extras["measures"])
        assert abs(a["eye_spacing"] - b["eye_spacing"]) < 0.3  # the same man in two photos
