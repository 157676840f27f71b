import numpy as np
import pytest

from apps.gradio_app import build_demo, compare_faces, confidence_bar, cost_text, export_report, method_choices, runner_capabilities
from core.io import load_image

from ..conftest import MISC


@pytest.mark.needs_data
def test_compare_faces_gives_the_verdict_and_crops(runner):
    out = compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg"))
    assert out["ok"] and "same person" in out["message"].lower()
    assert out["crop_a"].shape == (112, 112, 3) and out["details"]["c_score"] >= 0.9
    assert "C-Score" in out["bar"]


def test_compare_faces_reports_errors_as_messages(runner):
    assert compare_faces(runner, None, None)["message"].startswith("Upload two photos")
    out = compare_faces(runner, np.full((100, 100, 3), 128, np.uint8), np.full((100, 100, 3), 128, np.uint8))
    assert not out["ok"] and "no face found" in out["message"]


def test_confidence_bar():
    assert "0.970" in confidence_bar(0.97, True) and "width:94.0%" in confidence_bar(0.97, True)  # the bar spans 0.5-1
    assert "width:0.0%" in confidence_bar(0.5, False) and confidence_bar(0.9, True).count("#") == confidence_bar(0.9, False).count("#")
    assert "No C-Score" in confidence_bar(None, False)


def test_build_demo(runner):
    import gradio as gr

    demo = build_demo(runner)
    assert isinstance(demo, gr.Blocks)


@pytest.mark.needs_data
def test_compare_faces_shows_each_method_side_by_side(runner):
    seen = []
    out = compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "biden.jpg"), ["xmap3", "no_such_method"], "fast",
                        progress=lambda f, msg: seen.append(f))  # fmt: skip
    assert out["ok"] and "different people" in out["message"].lower()
    ok, bad = out["panels"]
    assert ok["image"].shape == (112, 2 * 112 + 4, 3) and "preset fast" in ok["caption"] and ok["text"]
    assert bad["error"] and "unknown explanation method" in bad["error"] and bad["image"] is None
    assert len(out["gallery"]) == 1 and "failed" in out["words"]
    assert seen and max(seen) == 1.0


def test_cost_text_and_choices(runner):
    keys = [k for _, k in method_choices()]
    assert {"xmap1", "xmap3", "single_removal", "minplus_average"} <= set(keys)
    assert "forward passes" in cost_text(runner, ["xmap1", "xmap3"], "fast")
    assert "No explanation method" in cost_text(runner, [], "fast")


@pytest.mark.needs_data
def test_each_panel_shows_its_deletion_score(runner):
    out = compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg"), ["cam", "grad_cam", "sdd"], "fast")
    cam, gcam, sdd = out["panels"]
    for p in (cam, gcam):
        assert "deletion score" in p["caption"] and "random map" in p["caption"]
        assert set(p["faithfulness"]) >= {"deletion_auc", "insertion_auc", "confidence_drop_pct", "prediction_change_pct"}
    assert sdd["error"] and "gallery" in sdd["error"]  # SDD without a gallery says what it needs
    assert set(out["details"]["faithfulness"]) == {"cam", "grad_cam", "random"}
    off = compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg"), ["cam"], "fast", deletion_scores=False)
    assert "deletion score" not in off["panels"][0]["caption"] and off["details"]["faithfulness"] == {}


@pytest.mark.needs_data
def test_missing_weights_are_named_and_the_geometry_still_shows():
    from core import Runner

    out = compare_faces(Runner(model="cbm_clip_vit_l14", device="cpu"), load_image(MISC / "obama.jpg"), load_image(MISC / "biden.jpg"), ["concepts"])
    assert not out["ok"] and "laion/CLIP-ViT-L-14-laion2B-s32B-b82K" in out["message"] and "huggingface-cli download" in out["message"]
    assert "Facial proportions" in out["words"] and "eye spacing" in out["words"]


@pytest.mark.needs_data
def test_explanations_in_words_show_without_maps(runner):
    out = compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg"), ["geometry", "xmap3"], deletion_scores=False)
    assert out["ok"]
    assert "Facial proportions (measured)" in out["words"] and "eye spacing" in out["words"]
    assert [c for _, c in out["gallery"]] and all("Facial proportions" not in c for _, c in out["gallery"])  # no picture for words


def test_the_toggles_offer_what_the_model_can_run(runner):
    caps = runner_capabilities(runner)  # SFace: black box and gradients, no ViT, no concept bottleneck
    keys = [k for _, k in method_choices(caps)]
    assert {"xmap3", "cam", "sdd", "geometry"} <= set(keys)
    assert not {"vit_lrp", "vit_rollout", "concepts"} & set(keys)
    from core import Runner

    assert runner_capabilities(Runner(model="clip_vit_l14", device="cpu")) is None  # no weights here: every method listed


@pytest.mark.needs_data
def test_the_last_comparison_exports_an_audit_report(runner, tmp_path):
    out = compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg"), ["cam"], "fast")
    files = export_report(out["result"], out["faithfulness"], str(tmp_path))
    assert [f.rsplit(".", 1)[-1] for f in files] == ["html", "json"]
    from pathlib import Path

    page = Path(files[0]).read_text()
    assert 'id="m-cam"' in page and "random map (baseline)" in page
    with pytest.raises(ValueError, match="compare two photos first"):
        export_report(None, None)


@pytest.mark.needs_data
def test_the_page_shows_a_grid_a_legend_and_the_viewer_and_a_failure_in_words(runner):
    import asyncio

    demo = build_demo(runner)
    fns = _handlers(demo)
    a, b = load_image(MISC / "obama.jpg"), load_image(MISC / "biden.jpg")
    out = asyncio.run(fns["on_compare"]("sface", a, b, ["xmap3", "grad_cam", "vit_lrp"], "fast", False, progress=lambda *x, **k: None))
    verdict, _, _, _, _, notes, last, _, _, grid, legend, title, image, _raw, bar, _words, method = out
    assert "different people" in verdict.lower()
    cells = grid["value"]
    # two methods with maps, each face's row padded to four cells (a column must not span the page)
    assert grid["columns"] == 4 and len(cells) == 8 and all(img.shape[:2] == (256, 256) for img, _ in cells)
    assert cells[0][1].startswith("X-Map III (occlusion") and ", face A: " in cells[0][1] and cells[5][1].startswith("Grad-CAM, face B")
    assert [c[1] for c in cells[2:4] + cells[6:]] == [""] * 4
    assert "green - grey - red" in legend and "dark - bright" in legend  # both colour scales, named
    assert "ViT-LRP" in notes and "vit" in notes  # the failure is said in words, not an empty picture
    assert method == "xmap3" and image.shape[0] == 512 and bar.shape[1] == 512 and "X-Map III" in title
    # a click on Grad-CAM's face-B cell opens it in the viewer
    import gradio as gr

    assert fns["on_cell"](last, 0.5, gr.SelectData(None, {"index": 3, "value": None}))[5] is None  # a blank cell opens nothing
    clicked = fns["on_cell"](last, 0.5, gr.SelectData(None, {"index": 5, "value": None}))
    assert clicked[5] == "grad_cam" and "Grad-CAM" in clicked[0] and clicked[1].shape[0] == 512
    faded = fns["on_opacity"](last, 0.0, "grad_cam")  # opacity 0: the photos alone
    assert faded[1].shape == clicked[1].shape and not np.array_equal(faded[1], clicked[1])


def _handlers(demo) -> dict:
    return {f.name: f.fn for f in demo.fns.values()}


@pytest.mark.slow
@pytest.mark.needs_data
def test_the_explore_tab_runs_a_csv_filters_it_and_opens_the_clicked_row(runner, tmp_path, monkeypatch):
    import asyncio
    import shutil

    import gradio as gr

    from ..conftest import DEEPFACE

    monkeypatch.delenv("XFV_SERVER_PATHS", raising=False)
    demo = build_demo(runner)
    fns = _handlers(demo)
    assert "on this server" not in str(demo.config)  # no server-path box unless the operator allows it
    photos = [shutil.copy(DEEPFACE / n, tmp_path / n) for n in ("img5.jpg", "img10.jpg", "img12.jpg")]
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\n{DEEPFACE}/img5.jpg,img12.jpg,0\n")
    summary, table, state = asyncio.run(fns["on_run"]("sface", [str(csv), *photos], ["cam"], "fast", 0, progress=lambda *a, **k: None))
    assert "**3** pairs: 2 compared, 1 failed" in summary
    rows = table["value"]["data"]
    assert [r[0] for r in rows] == [0, 1, 2] and rows[2][-2] == f"{DEEPFACE}/img5.jpg: not in your upload"
    shown, state, message = fns["on_filter"](state, "different people", "any", 0.0, "", "index", False)
    assert message == "1 of 3 pairs shown." and [r[0] for r in shown["value"]["data"]] == [1]
    line = shown["value"]["data"][0]
    verdict, grid, picked, title, image, _raw, bar, _words, method = fns["on_select"](
        state, gr.SelectData(None, {"index": [0, 2], "value": line[2], "row_value": line})
    )
    assert verdict.startswith("**Different people") and "the decision is **right**" in verdict
    cells = grid["value"]  # the same grid as the face tab: one column (CAM) padded to four, a row per face, whole maps
    assert grid["columns"] == 4 and len(cells) == 8 and cells[0][0].shape == (256, 256, 3) and "CAM" in cells[4][1]
    assert method == "cam" and image.shape[0] == 512 and "CAM" in title and bar.shape[1] == 512
    again = fns["on_cell"](picked, 1.0, gr.SelectData(None, {"index": 4, "value": None}))
    assert again[5] == "cam" and again[1].shape == image.shape


@pytest.mark.needs_data
def test_the_operator_can_allow_server_paths_for_a_local_installation(runner, tmp_path, monkeypatch):
    import asyncio

    from ..conftest import DEEPFACE

    monkeypatch.setenv("XFV_SERVER_PATHS", "1")
    demo = build_demo(runner)
    assert "on this server" in str(demo.config)
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"file_x,file_y,same\n{DEEPFACE}/img5.jpg,{DEEPFACE}/img10.jpg,1\n")
    summary, _, state = asyncio.run(_handlers(demo)["on_run"]("sface", None, [], "fast", 0, str(csv), progress=lambda *a, **k: None))
    assert "**1** pairs: 1 compared" in summary and state["rows"][0].decision == "same"
