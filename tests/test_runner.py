import numpy as np
import pytest

from core import Explanation, Runner
from core.errors import CalibrationError
from core.registry import _EXPLAINERS, ExplainerSpec, register_explainer

from .conftest import MISC


class _Boom:
    name = "boom"
    label = "Always fails"
    requires = frozenset({"blackbox"})

    def explain(self, pair, embedder, **knobs):
        raise RuntimeError("kaboom")

    def close(self):
        pass


class _Mean:
    name = "mean_map"
    label = "Mean intensity"
    requires = frozenset({"blackbox"})

    def explain(self, pair, embedder, **knobs):
        maps = [f.image.mean(2).astype(np.float32) / 255 for f in pair]
        return Explanation(self.name, self.label, maps=maps, scores={"n": 2.0})

    def close(self):
        pass


@pytest.fixture
def fake_methods():
    register_explainer(ExplainerSpec("boom", "Always fails", _Boom, frozenset({"blackbox"})))
    register_explainer(ExplainerSpec("mean_map", "Mean", _Mean, frozenset({"blackbox"})))
    register_explainer(ExplainerSpec("needs_vit", "ViT only", _Mean, frozenset({"vit"})))
    yield
    for k in ("boom", "mean_map", "needs_vit"):
        _EXPLAINERS.pop(k, None)


@pytest.mark.needs_data
def test_a_failing_method_does_not_hide_the_others(runner, obama_pair, fake_methods):
    res = runner.explain(obama_pair, methods=["boom", "mean_map", "needs_vit", "no_such_method"])
    by = {e.method: e for e in res.explanations}
    assert "kaboom" in by["boom"].error
    assert by["mean_map"].ok and by["mean_map"].maps[0].shape == (112, 112)
    assert "needs vit" in by["needs_vit"].error
    assert "unknown explanation method" in by["no_such_method"].error
    assert res.same and res.to_dict()["explanations"][1]["scores"] == {"n": 2.0}


@pytest.mark.needs_data
def test_verify_is_symmetric_and_reports_its_parameters(runner, obama_pair):
    from core.types import FacePair

    r1 = runner.verify(obama_pair)
    r2 = runner.verify(FacePair(obama_pair.b, obama_pair.a))
    assert r1.similarity == pytest.approx(r2.similarity, abs=1e-5)
    d = r1.to_dict()
    assert d["model"] == "sface" and len(d["weights_sha256"]) == 64 and d["params"]["input_size"] == 112


def test_threshold_override_and_missing_calibration(tmp_path):
    r = Runner(device="cpu", calibration=tmp_path / "none.json")
    with pytest.raises(CalibrationError):
        r.threshold()
    r = Runner(device="cpu", calibration=tmp_path / "none.json", threshold=0.3)
    assert r.threshold() == 0.3


@pytest.mark.needs_data
def test_progress_callback(runner, obama_pair, fake_methods):
    seen = []
    runner.explain(obama_pair, methods=["mean_map"], progress=lambda f, m: seen.append((f, m)))
    assert seen[0][0] == 0.0 and seen[-1] == (1.0, "done")


@pytest.mark.needs_data
def test_prepare_from_bytes_and_arrays(runner):
    from core.io import load_image

    data = (MISC / "obama.jpg").read_bytes()
    a = runner.prepare(data)
    b = runner.prepare(load_image(MISC / "obama.jpg"))
    np.testing.assert_array_equal(a.image, b.image)


def test_runner_costs_methods_before_running():
    r = Runner(model="sface", threshold=0.5)  # nothing is loaded to cost methods
    cost = r.forward_passes(["xmap1", "xmap3", "greedy_removal"], preset="fast")
    assert cost["xmap3"] == 0 and cost["xmap1"] > 0 and cost["total"] == cost["xmap1"] + cost["greedy_removal"]
    assert r._embedder is None


@pytest.mark.needs_data
def test_explain_adds_region_tables_and_reports_progress(runner, obama_pair):
    from core.explainers import perturb

    perturb.clear_cache()  # a cached result has no progress to report
    seen = []
    res = runner.explain(obama_pair, methods=["xmap2"], progress=lambda f, msg: seen.append((f, msg)), preset="fast")
    (exp,) = res.explanations
    assert exp.ok and len(exp.extras["regions"]) == 2 and exp.extras["region_landmarks"][0] in ("dlib68", "five_point")
    assert any("first face" in t for t in exp.text) and any("second face" in t for t in exp.text)
    assert any("xmap2: occlusions" in msg for _, msg in seen)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0


def test_one_call_names_xmap1_as_the_source_of_xmap2_and_xmap3():
    import hashlib

    from core.explainers import perturb
    from core.report import cost_words
    from core.types import FacePair

    from .explainers.conftest import RegionEmbedder, toy_face

    perturb.clear_cache()
    pair = FacePair(toy_face(), toy_face(value=250))
    res = Runner(embedder=RegionEmbedder(), threshold=0.5).explain(pair, methods=["xmap1", "xmap2", "xmap3"], patch_sizes=(14,), stride=10)
    x1, x2, x3 = res.explanations
    n = int(x1.scores["forward_passes"])
    assert n > 0 and "cached_from" not in x1.extras and cost_words(x1).startswith(f"{n} forward passes, ")
    for e in (x2, x3):
        assert e.ok and e.scores["forward_passes"] == 0
        assert e.extras["cached_from"]["method"] == "xmap1" and e.extras["cached_from"]["forward_passes"] == n
        assert cost_words(e).startswith(f"from the cache of X-Map I ({n} forward passes, ")
    # the inputs were aligned faces: their crops are hashed, and said to be
    assert [i["sha256"] for i in res.params["inputs"]] == [hashlib.sha256(f.image.tobytes()).hexdigest() for f in pair]
    assert {i["of"] for i in res.params["inputs"]} == {"aligned crop"}
    failed = Runner(embedder=RegionEmbedder(), threshold=0.5).explain(pair, methods=["vit_lrp"]).explanations[0]
    assert not failed.ok and failed.label != "vit_lrp"  # a failed method is still named by its label


@pytest.mark.needs_data
def test_explain_records_each_input_file_name_and_sha256(runner):
    import hashlib

    data = (MISC / "obama2.jpg").read_bytes()
    res = runner.explain(MISC / "obama.jpg", data)
    a, b = res.params["inputs"]
    assert a == {"name": "obama.jpg", "of": "file", "sha256": hashlib.sha256((MISC / "obama.jpg").read_bytes()).hexdigest()}
    assert b["of"] == "bytes" and b["sha256"] == hashlib.sha256(data).hexdigest() and b["name"] is None
    assert res.to_dict()["params"]["inputs"] == [a, b]


@pytest.mark.needs_data
def test_a_bad_knob_is_the_users_error_named_in_the_method_panel_without_a_traceback(runner, obama_pair, caplog):
    import logging

    with caplog.at_level(logging.ERROR, logger="core.runner"):
        res = runner.explain(obama_pair, methods=["xmap1", "single_removal", "geometry"], patch_sizes=(0,), agg_start="nowhere", fill="mauve")
    errors = {e.method: e.error for e in res.explanations}
    assert errors["xmap1"] == "patch_sizes=(0,) is not allowed: each value of patch_sizes must be 1 to 112"
    assert "mauve" in errors["single_removal"] or "nowhere" in errors["single_removal"]
    assert errors["geometry"] is None  # the others still run
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # reported as the user's error, not logged as a bug
