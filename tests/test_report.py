"""Audit reports: self-contained HTML and an exact JSON."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from core.report import RANDOM_LABEL, array_from_record, cost_words, input_record, report_html, write_report
from core.types import Explanation, FacePair, PairResult

from .conftest import MISC
from .explainers.conftest import toy_face


def _offline(page: str) -> bool:
    """No script and nothing fetched from elsewhere: every src/href is a data URI or an anchor."""
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    return "<script" not in page.lower() and "@import" not in page and all(r.startswith(("data:", "#")) for r in refs)


def toy_result() -> PairResult:
    pair = FacePair(toy_face(32, 200), toy_face(32, 90))
    m = np.linspace(-1, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    chart = {"data": [{"type": "bar", "orientation": "h", "x": [0.2, 0.1], "y": ["b", "a"]}], "layout": {"title": {"text": "Shared concepts"}}}
    exps = [Explanation("xmap2", "X-Map II <occlusion>", maps=[m, -m], signed=True, scores={"forward_passes": 10.0, "sm_oim": float("nan")},
                        text=["The eyes & nose matter."], runtime_s=0.5),
            Explanation("concepts", "Concepts in words", text=["Both faces show round eyes."],
                        extras={"chart": chart, "table": [{"group": "eyes", "share": 0.2}]}),
            Explanation("vit_lrp", "ViT-LRP", error="needs vit, which model 'toy' does not offer")]  # fmt: skip
    return PairResult(pair, 0.62, 0.5, True, 0.91, "toy", "ab" * 32, exps, params={"preset": "fast"}, timings={"embed": 0.1})


def test_html_is_self_contained_and_shows_every_panel():
    res = toy_result()
    page = report_html(res, {"xmap2": {"deletion_auc": 0.1}, "random": {"deletion_auc": 0.2}})
    assert _offline(page)
    for e in res.explanations:
        assert f'id="m-{e.method}"' in page
    assert "X-Map II &lt;occlusion&gt;" in page and "The eyes &amp; nose matter." in page  # escaped
    assert page.count('class="maps"') == 1 and "Failed: needs vit" in page
    assert "Shared concepts" in page and 'class="fill"' in page  # the chart, as CSS bars
    assert "ab" * 32 in page and "C-Score" in page and "deletion AUC" in page and '"preset": "fast"' in page


def test_json_keeps_the_exact_maps_and_is_strict(tmp_path):
    res = toy_result()
    html_path, json_path = write_report(res, tmp_path / "out" / "case1.html")
    assert html_path.name == "case1.html" and json_path.name == "case1.json"
    data = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    maps = data["explanations"][0]["maps"]
    np.testing.assert_array_equal(array_from_record(maps[0]), res.explanations[0].maps[0])
    np.testing.assert_array_equal(array_from_record(maps[1]), res.explanations[0].maps[1])
    assert data["explanations"][0]["scores"]["sm_oim"] is None  # NaN is not JSON
    assert data["report"]["versions"]["torch"] and data["weights_sha256"] == "ab" * 32 and data["crops"][0].startswith("data:image/png")


@pytest.mark.needs_data
def test_explain_writes_a_report_with_faithfulness(tmp_path, capsys):
    from core.__main__ import main

    code = main(["explain", str(MISC / "obama.jpg"), str(MISC / "obama2.jpg"), "--methods", "cam,geometry", "--report", str(tmp_path / "r"), "-q"])
    assert code == 0
    page = (tmp_path / "r.html").read_text()
    assert _offline(page) and 'id="m-cam"' in page and 'id="m-geometry"' in page and "The same person" in page
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["faithfulness"]) == {"cam", "random"} and data["model"] == "sface"
    assert "wrote" in capsys.readouterr().err


def test_the_aggregation_start_and_its_seed_are_in_both_reports(tmp_path):
    from core.explainers import perturb
    from core.explainers.removal import RemovalExplainer

    from .explainers.conftest import RegionEmbedder

    perturb.clear_cache()
    toy_pair = FacePair(toy_face(), toy_face(value=250))
    e = RemovalExplainer("single_aggregation").explain(toy_pair, RegionEmbedder(), region_size=64, grid_step=32, steps=2, seed=7)
    res = PairResult(toy_pair, 0.9, 0.5, True, None, "toy", "cd" * 32, [e])
    html_path, json_path = write_report(res, tmp_path / "agg.html")
    page = html_path.read_text()
    assert "Settings" in page and "start_seed" in page and "near_black_noise" in page
    assert json.loads(json_path.read_text())["explanations"][0]["extras"]["start"] == {"image": "near_black_noise", "seed": 7}


def _visible(page: str) -> str:
    """The page's text without tags, attributes, the style sheet and data URIs."""
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return re.sub(r"<[^>]*>", " ", page)


def test_no_nan_anywhere_and_a_legible_random_baseline():
    res = toy_result()
    res.c_score = float("nan")
    res.params["knob"] = float("nan")
    res.explanations[0].text.append("The score is nan here.")
    nan = float("nan")
    faith = {"xmap2": {"deletion_auc": 0.1, "confidence_drop_pct": nan}, "random": {"deletion_auc": 0.25, "confidence_drop_pct": nan}}
    page = report_html(res, faith)
    assert not re.search(r"\bnan\b", page, re.IGNORECASE) and "NaN" not in page
    assert page.count("n/a") >= 4  # sm_oim, the C-Score, both confidence drops, the sentence
    # the random map is a labelled row of a table, beside the method's, not a JSON dump
    assert "deletion_auc" not in _visible(page) and "{&quot;" not in page
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert (RANDOM_LABEL, "0.250") in rows and ("X-Map II &lt;occlusion&gt;", "0.100") in rows


def test_headings_and_tables_use_labels_not_registry_keys():
    res = toy_result()
    res.explanations.append(Explanation("xmap1", "xmap1", error="no model"))  # failed before it could say its label
    page = report_html(res, {"xmap2": {"deletion_auc": 0.1}, "random": {"deletion_auc": 0.2}})
    heads = re.findall(r"<h3>(.*?)</h3>", page)
    assert heads[0].startswith("X-Map II &lt;occlusion&gt; <small>(10 forward passes, 0.50 s)")
    from core.registry import explainer_spec

    assert any(h.startswith(f"{explainer_spec('xmap1').label} <small>") for h in heads)  # the registry's label
    text = _visible(page.split("<h2>For audit</h2>")[0])
    for key in ("xmap2", "xmap1", "vit_lrp"):
        assert not re.search(rf"\b{key}\b", text), key


def test_the_report_shows_cached_provenance_and_the_inputs(tmp_path):
    from core.explainers import occlusion, perturb

    from .explainers.conftest import RegionEmbedder

    perturb.clear_cache()
    pair, toy = FacePair(toy_face(), toy_face(value=250)), RegionEmbedder()
    x1 = occlusion.XMapExplainer(1).explain(pair, toy, preset="fast")
    x3 = occlusion.XMapExplainer(3).explain(pair, toy, preset="fast")
    n = int(x1.scores["forward_passes"])
    inputs = [input_record(b"first photo", "a.jpg"), input_record(np.zeros((4, 4, 3), np.uint8))]
    res = PairResult(pair, 0.9, 0.5, True, None, "toy", "cd" * 32, [x1, x3], params={"inputs": inputs})
    html_path, json_path = write_report(res, tmp_path / "prov.html")
    page = html_path.read_text()
    heads = re.findall(r"<h3>(.*?)</h3>", page)
    assert heads[1].startswith(f"X-Map III (occlusion, Knoche et al.) <small>(from the cache of X-Map I ({n} forward passes, ")
    assert "Provenance" in page and "(0 forward passes" not in page
    assert "a.jpg" in page and inputs[0]["sha256"] in page and inputs[1]["sha256"] in page and "array" in page
    data = json.loads(json_path.read_text())
    assert data["explanations"][1]["extras"]["cached_from"]["method"] == "xmap1" and data["params"]["inputs"] == inputs


def test_cost_words():
    e = Explanation("xmap1", "X-Map I (occlusion, Knoche et al.)", scores={"forward_passes": 2500.0}, runtime_s=61.23)
    assert cost_words(e) == "2500 forward passes, 61.2 s"
    assert cost_words(Explanation("grad_cam", "Grad-CAM", runtime_s=0.314)) == "0.31 s"
    served = {"method": "xmap1", "label": "X-Map I (occlusion, Knoche et al.)", "forward_passes": 2500, "runtime_s": 61.2}
    e3 = Explanation("xmap3", "X-Map III", scores={"forward_passes": 0.0}, extras={"cached_from": served}, runtime_s=0.02)
    assert cost_words(e3) == "from the cache of X-Map I (2500 forward passes, 61.2 s)"
    two = {**served, "forward_passes": 700, "runtime_s": 3.0, "sources": [{"method": "greedy_removal", "label": "Greedy removal (Mery & Morris)",
           "forward_passes": 500, "runtime_s": 2.0}, {"method": "single_removal", "label": "Single removal (Mery & Morris)", "forward_passes": 200,
           "runtime_s": 1.0}]}  # fmt: skip
    e4 = Explanation("minplus_average", "Average", scores={"forward_passes": 90.0}, extras={"cached_from": two}, runtime_s=1.5)
    assert cost_words(e4) == "90 forward passes, 1.5 s, plus from the cache of Greedy removal and Single removal (700 forward passes, 3.0 s)"


def test_input_records_hash_what_was_given(tmp_path):
    import hashlib
    import io

    from PIL import Image

    raw = b"\x89PNG not really"
    f = tmp_path / "photo one.png"
    f.write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    assert input_record(f) == {"name": "photo one.png", "of": "file", "sha256": sha}
    assert input_record(str(f), name="upload.png")["name"] == "upload.png"
    assert input_record(raw) == {"name": None, "of": "bytes", "sha256": sha}
    stream = io.BytesIO(b"xx" + raw)
    stream.seek(2)
    assert input_record(stream)["sha256"] == sha and stream.tell() == 2  # from where it stood, left there
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    rec = input_record(a)
    assert rec["of"] == "array" and rec["shape"] == [4, 4, 3] and rec["dtype"] == "uint8" and rec["sha256"] == hashlib.sha256(a.tobytes()).hexdigest()
    assert input_record(Image.fromarray(a))["sha256"] == rec["sha256"] and input_record(Image.fromarray(a))["of"] == "pixels"
    missing = input_record(tmp_path / "nope.jpg")
    assert missing["sha256"] is None and missing["name"] == "nope.jpg" and "error" in missing


def test_region_tables_show_percentages_and_evidence_per_area():
    from core.text.regions import RegionRow

    rows = [RegionRow("left_eye", "left eye", 0.09, 0.306, 0.0, 0.5, density=0.306 / 0.09).to_dict(),
            RegionRow("other", "rest of the image", 0.91, 0.694, 1.0, 0.1, density=0.694 / 0.91, dissimilar_density=1 / 0.91).to_dict()]  # fmt: skip
    res = toy_result()
    res.explanations[0].extras["regions"] = [rows, None]
    page = report_html(res)
    assert "Regions, first face" in page and "Regions, second face" not in page
    cells = re.findall(r"<tr><td>left eye</td>((?:<td>[^<]*</td>)+)</tr>", page)[0]
    assert re.findall(r"<td>([^<]*)</td>", cells)[:5] == ["9.0", "30.6", "3.4x", "0.0", "0.0x"]
    assert "similar x area" in page and "dissimilar x area" in page
