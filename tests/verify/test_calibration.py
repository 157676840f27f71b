import json

import numpy as np
import pytest

from core.data import pairs_from_identities, read_identities, read_labelled_pairs, read_pairs
from core.errors import CalibrationError, DataError
from core.verify.calibration import build_calibration, default_calibration_path, load_calibration

from ..conftest import DEEPFACE


def test_build_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    d = np.where(y, rng.normal(0.4, 0.1, 500), rng.normal(0.8, 0.1, 500))
    cal = build_calibration(d, y, "m", "abc", source={"data": "synthetic"})
    assert cal.n_genuine == y.sum() and cal.n_impostor == (~y).sum()
    p = cal.save(tmp_path / "m.json")
    raw = json.loads(p.read_text())
    assert raw["source"]["data"] == "synthetic" and len(raw["source"]["fold_thresholds"]) == 10
    back = load_calibration("m", p)
    assert back == cal
    same, c = back.decide(0.9)
    assert same and c > 0.9


def test_missing_or_bad_calibration(tmp_path):
    with pytest.raises(CalibrationError, match="calibrate"):
        load_calibration("m", tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CalibrationError, match="not a valid"):
        load_calibration("m", tmp_path / "bad.json")


@pytest.mark.needs_data
def test_identities_imply_140_genuine_and_1690_impostor_pairs():
    pairs = pairs_from_identities(read_identities(DEEPFACE / "identities.csv"))
    assert sum(p.same for p in pairs) == 140 and sum(not p.same for p in pairs) == 1690
    same_kind, kind = read_labelled_pairs(DEEPFACE / "identities.csv")
    assert kind == "identities" and len(same_kind) == 1830
    assert read_labelled_pairs(DEEPFACE / "pairs.csv")[1] == "pairs"


def test_the_shipped_default_calibration_is_valid():
    cal = load_calibration("sface", default_calibration_path("sface"))
    from core.models.sface import ONNX_SHA256

    assert cal.weights_sha256 == ONNX_SHA256
    assert cal.n_genuine == 140 and cal.n_impostor == 1690
    assert 0.2 < cal.threshold_similarity < 0.7


def test_bad_pairs_files(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="missing column"):
        read_pairs(p)
    p.write_text("file_x,file_y,same\nx.jpg,y.jpg,maybe\n")
    with pytest.raises(DataError, match="'same' must be"):
        read_pairs(p)
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "none.csv")
