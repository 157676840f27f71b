"""Two face models side by side on the face tab (``apps.model_compare``, wired in
``apps.gradio_app``): both decisions, the second model's maps, the comparison table with the
numbers ``core.comparison.compare_models`` computes; "none" keeps the page as it was."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from apps.gradio_app import build_demo
from apps.handlers import Runners, compare_faces
from apps.model_compare import NONE, compare_pair, comparison_rows, export_comparison, second_grid, second_model_choices
from core.io import load_image

from ..conftest import MISC

METHODS = ["xmap3", "cam"]


@pytest.fixture(scope="module")
def runners(runner):
    return Runners(runner, device="cpu")


@pytest.fixture(scope="module")
def dlib(runners):
    return runners.get("dlib_resnet")  # the one the page's cache made and keeps


@pytest.fixture(scope="module")
def photos():
    return load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg")


@pytest.fixture(scope="module")
def two(runners, photos):
    seen = []
    out = compare_pair(runners, "sface", "dlib_resnet", *photos, METHODS, "fast", progress=lambda f, msg: seen.append((f, msg)))
    out["progress"] = seen
    return out


def test_the_second_chooser_starts_with_none_then_every_model():
    choices = second_model_choices()
    assert choices[0] == (NONE, NONE) and {"sface", "dlib_resnet"} <= {k for _, k in choices[1:]}


@pytest.mark.needs_data
def test_two_models_show_both_decisions_and_c_scores(two):
    assert two["ok"]
    message = two["message"]
    assert message.startswith("**The models agree.**\n") and "**sface**: The same person" in message and "**dlib_resnet**: The same person" in message
    assert "(sface)" in message and "(dlib_resnet)" in message  # each verdict names its model
    assert two["bar"].count("C-Score <b>") == 2 and "<b>sface</b>" in two["bar"] and "<b>dlib_resnet</b>" in two["bar"]
    # the page's single-model parts keep showing the first model
    assert two["result"].model == "sface" and two["crop_a"].shape == (112, 112, 3) and two["details"]["model"] == "sface"
    assert two["second"]["result"].model == "dlib_resnet" and two["second"]["crop_a"].shape == (150, 150, 3)
    assert two["details"]["second_model"]["model"] == "dlib_resnet" and [c["method"] for c in two["details"]["comparison"]] == METHODS
    fractions = [f for f, _ in two["progress"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(msg.startswith("dlib_resnet: ") for _, msg in two["progress"])


@pytest.mark.needs_data
def test_the_table_holds_the_rank_correlations_compare_models_computes(two, runner, dlib, photos):
    from core.comparison import compare_models

    again = compare_models([runner, dlib], *photos, METHODS, faithfulness=False, preset="fast")  # computed apart from the app
    table = two["table"]
    assert "sface" in table and "dlib_resnet" in table and "rank correlation, face A" in table
    rows = comparison_rows(two["comparison"])
    assert [r[0] for r in rows] == [a.label for a in again.methods]
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    for row, line, agreement in zip(rows, body, again.methods, strict=True):
        assert agreement.rank_correlation[0] is not None and agreement.rank_correlation[1] is not None
        shown = [float(row[1]), float(row[2])]
        assert np.allclose(shown, agreement.rank_correlation, atol=0.005), (shown, agreement.rank_correlation)
        assert [c.strip() for c in line.strip("| ").split(" | ")] == row  # the Markdown shows exactly those rows
        assert agreement.sentence in table  # e.g. "X-Map III ...: only sface on the ...; rank correlation ..."
        assert row[3] == (", ".join(agreement.regions["sface"]) or "none") and row[4] == (", ".join(agreement.regions["dlib_resnet"]) or "none")
    # each map's deletion score on its own model, next to the random map's
    cmp = two["comparison"]
    for row, a in zip(rows, cmp.methods, strict=True):
        for cell, m in zip(row[5:], a.models, strict=True):
            score, rnd = a.faithfulness[m]["deletion_auc"], cmp.faithfulness[m]["random"]["deletion_auc"]
            assert cell == f"{score:+.3f} ({rnd:+.3f})"


@pytest.mark.needs_data
def test_the_second_models_maps_make_their_own_grid(two):
    last = {"kind": "faces", "result": two["result"], "faithfulness": two["faithfulness"], "comparison": two["comparison"]}
    grid = second_grid(last)
    assert grid["model"] == "dlib_resnet" and grid["table"] == two["table"]
    cells = grid["cells"]
    assert len(cells) == 8 and all(img.shape == (256, 256, 3) for img, _ in cells)  # two methods, padded to four columns, two rows
    assert cells[0][1].startswith("X-Map III (occlusion, Knoche et al.) — dlib_resnet, face A: ")
    assert cells[5][1].startswith("CAM (exact decomposition) — dlib_resnet, face B: ")
    mine = two["second"]["result"].explanations[0].maps[0]
    assert not np.array_equal(mine, two["result"].explanations[0].maps[0]) and mine.shape == (150, 150)  # dlib's own crop
    assert second_grid({**last, "comparison": None}) == {"cells": [], "model": None, "table": "", "result": None}


@pytest.mark.needs_data
def test_none_gives_todays_single_model_output(runners, runner, photos):
    out = compare_pair(runners, "sface", NONE, *photos, ["cam"], "fast")
    today = compare_faces(runner, *photos, ["cam"], "fast")
    assert out.keys() == today.keys() and "comparison" not in out and "second" not in out
    assert out["message"] == today["message"] and out["bar"] == today["bar"] and out["message"].startswith("**The same person")
    assert out["details"]["faithfulness"] == today["details"]["faithfulness"]


def test_the_same_model_twice_is_refused_with_a_sentence(runners, photos):
    out = compare_pair(runners, "sface", "sface", *photos, METHODS, "fast")
    assert not out["ok"] and "same model, sface" in out["message"] and '"none"' in out["message"]


@pytest.mark.needs_data
def test_a_second_model_without_its_weights_says_so(runners, photos):
    out = compare_pair(runners, "sface", "cbm_clip_vit_l14", *photos, ["cam"], "fast")
    assert not out["ok"] and out["message"].startswith("The second model, cbm_clip_vit_l14, cannot run here:")
    assert "laion/CLIP-ViT-L-14-laion2B-s32B-b82K" in out["message"]


def test_missing_photos_are_said_with_two_models(runners):
    assert compare_pair(runners, "sface", "dlib_resnet", None, None)["message"].startswith("Upload two photos")


@pytest.mark.needs_data
def test_the_audit_report_of_two_models(two, tmp_path):
    files = export_comparison(two["comparison"], str(tmp_path))
    assert [Path(f).suffix for f in files] == [".html", ".json"]
    page = Path(files[0]).read_text()
    assert "sface" in page and "dlib_resnet" in page and "rank correlation" in page.lower()
    data = json.loads(Path(files[1]).read_text())
    assert set(data["models"]) == {"sface", "dlib_resnet"} and len(data["comparison"]) == 2


def _handlers(demo) -> dict:
    return {f.name: f.fn for f in demo.fns.values()}


@pytest.mark.needs_data
def test_the_page_wires_the_second_model(runner, dlib, photos, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setenv("XFV_TEMP", str(tmp_path))
    demo = build_demo(runner)
    config = str(demo.config)
    assert "'model2'" in config and "'method-grid-2'" in config and "'model-compare'" in config
    chooser = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model2")
    assert isinstance(chooser, gr.Dropdown) and chooser.value == NONE and chooser.choices[0] == (NONE, NONE)
    fns = _handlers(demo)
    same = asyncio.run(fns["on_compare"]("sface", *photos, ["cam"], "fast", False, model2="sface", progress=lambda *a, **k: None))
    assert "same model" in same[0] and same[6] is None
    out = asyncio.run(fns["on_compare"]("sface", *photos, ["cam"], "fast", True, model2="dlib_resnet", progress=lambda *a, **k: None))
    verdict, bar, _, _, _, _, last, *_ = out
    grid, title = out[9], out[11]
    assert title.startswith("### sface: CAM")  # the viewer opens on the first model's map and names the model
    assert "**dlib_resnet**" in verdict and bar.count("C-Score <b>") == 2
    assert grid["label"].startswith("First model, sface") and " — sface, face A" in grid["value"][0][1]
    grid2, table = fns["on_second"](last)
    assert grid2["visible"] and grid2["label"].startswith("Second model, dlib_resnet") and len(grid2["value"]) == 8
    assert table["visible"] and "dlib_resnet" in table["value"] and "CAM" in table["value"]
    files = fns["on_export"](last)
    assert Path(files[0]).name == "model_comparison.html"
    one = asyncio.run(fns["on_compare"]("sface", *photos, ["cam"], "fast", False, progress=lambda *a, **k: None))  # "none": as before
    assert one[6]["comparison"] is None and one[9]["label"] == "Every method: face A (top row), face B (bottom row); click a map to see it large"
    hidden_grid, hidden_table = fns["on_second"](one[6])
    assert not hidden_grid["visible"] and not hidden_table["visible"]
    assert Path(fns["on_export"](one[6])[0]).name == "face_comparison.html"


def test_the_cost_line_counts_both_models(runner):
    from apps.handlers import Runners
    from apps.model_compare import cost_both

    pool = Runners(runner)
    one = cost_both(pool, "sface", "none", ["xmap3"], "fast")
    two = cost_both(pool, "sface", "dlib_resnet", ["xmap3"], "fast")
    dlib = pool.get("dlib_resnet").forward_passes(["xmap3"], preset="fast")["total"]
    assert two.startswith(one) and f"**{dlib:,}**" in two and "dlib_resnet" in two and "dlib_resnet" not in one
