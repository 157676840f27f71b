"""Audit reports: self-contained HTML and an exact JSON."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from core.report import array_from_record, report_html, write_report
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
    assert "ab" * 32 in page and "C-Score" in page and "deletion_auc" in page and '"preset": "fast"' in page


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
