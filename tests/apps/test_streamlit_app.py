"""The Streamlit page under ``streamlit.testing.v1.AppTest``: no browser, no server; uploads
go through ``FileUploader.set_value``. The face runner is the real offline default (SFace),
loaded once per process by the page's ``st.cache_resource``."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.registry import DEFAULT_MODEL

from ..conftest import MISC, ROOT

SCRIPT = ROOT / "apps" / "streamlit_app.py"
TIMEOUT = 300  # seconds per script run: the first loads torch, MTCNN and SFace on a shared CPU


def _page() -> AppTest:
    return AppTest.from_file(SCRIPT, default_timeout=TIMEOUT).run()


def _upload(at: AppTest, key: str, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    at.file_uploader(key=key).set_value((name, data, mime))


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, format="PNG")
    return buf.getvalue()


def test_page_renders_both_tabs_with_the_default_model_first():
    at = _page()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Face verification", "Chest X-ray", "Ask about the result", "Explore"]
    model = at.selectbox(key="model")
    assert model.value == DEFAULT_MODEL and "SFace" in model.options[0]
    methods = at.multiselect(key="methods")
    assert "CAM (exact decomposition)" in methods.options and methods.value == ["xmap3"]
    assert at.file_uploader(key="photo_a").allowed_type and at.file_uploader(key="xray").allowed_type
    assert at.button(key="compare") and at.button(key="diagnose")
    assert any("forward passes" in m.value for m in at.markdown)


@pytest.mark.slow
def test_a_model_without_its_weights_lists_every_method_and_says_so():
    at = _page()
    at.selectbox(key="model").set_value("cbm_clip_vit_l14").run()
    assert not at.exception
    assert any("weights of this model are not here" in c.value for c in at.caption)
    assert "Concepts in words (CLIP bottleneck)" in at.multiselect(key="methods").options


@pytest.mark.needs_data
def test_example_pairs_from_xfv_examples_fill_both_sides(monkeypatch):
    monkeypatch.setenv("XFV_EXAMPLES", str(MISC))
    at = _page()
    pick = at.selectbox(key="example")
    assert pick.value is None and pick.options[0] == "32bit.png / biden.jpg"
    pick.set_value(0).run()
    assert not at.exception and len(at.image) == 2  # both photos shown, ready to compare


def test_a_file_that_is_not_an_image_says_so():
    at = _page()
    _upload(at, "photo_a", "notes.jpg", b"this is not a photo")
    at.run()
    assert not at.exception
    assert any(e.value.startswith("notes.jpg:") for e in at.error), [e.value for e in at.error]
    at.button(key="compare").click().run()  # one side missing: the handler's message, no crash
    assert not at.exception and any("Upload two photos" in e.value for e in at.error)


@pytest.mark.slow
def test_the_xray_tab_says_when_the_model_cannot_run_here(tmp_path, monkeypatch):
    monkeypatch.setenv("XFV_CXR_CLIP", str(tmp_path / "no-model-here"))
    at = _page()
    _upload(at, "xray", "chest.png", _png(), "image/png")
    at.radio(key="saliency").set_value("none")
    at.button(key="diagnose").click().run()
    assert not at.exception
    assert any("cannot run here" in w.value and "open_clip" in w.value for w in at.warning), [w.value for w in at.warning]


@pytest.mark.slow
@pytest.mark.needs_data
def test_compare_two_uploaded_faces_shows_the_verdict_and_the_method_panel():
    at = _page()
    _upload(at, "photo_a", "obama.jpg", (MISC / "obama.jpg").read_bytes())
    _upload(at, "photo_b", "obama2.jpg", (MISC / "obama2.jpg").read_bytes())
    at.multiselect(key="methods").set_value(["cam"])
    at.toggle(key="deletion").set_value(False)
    at.button(key="compare").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("same person" in m.value.lower() for m in at.markdown)
    assert "C-Score" in at.html[0].value
    grid = at.container(key="faces-grid")  # the method grid: CAM for face A and face B
    assert len(grid.get("image")) == 2
    viewer = at.container(key="faces-viewer")
    assert any(m.value.startswith("### CAM (exact decomposition)") for m in viewer.markdown)
    assert at.dataframe and list(at.dataframe[0].value.columns)[:3] == ["method", "face", "region"]
    # the result stays across reruns; the report comes as two downloads
    at.button(key="export").click().run()
    assert not at.exception and any("same person" in m.value.lower() for m in at.markdown)
    assert {b.label for b in at.download_button} == {"Download face_comparison.html", "Download face_comparison.json"}
    # a question about that result is answered from its numbers
    at.chat_input(key="question").set_value("How sure is it?").run()
    assert not at.exception
    answers = [m.markdown[0].value for m in at.chat_message if m.name == "assistant"]
    assert answers and "C-Score" in answers[-1] and "built-in answer" in answers[-1]


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_second_model_shows_both_decisions_its_grid_and_the_comparison():
    at = _page()
    at.selectbox(key="model2").set_value("dlib_resnet").run()
    _upload(at, "photo_a", "obama.jpg", (MISC / "obama.jpg").read_bytes())
    _upload(at, "photo_b", "obama2.jpg", (MISC / "obama2.jpg").read_bytes())
    at.multiselect(key="methods").set_value(["cam"])
    at.toggle(key="deletion").set_value(False)
    assert any("The second model (dlib_resnet) runs them too" in m.value for m in at.markdown)
    at.button(key="compare").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    text = "\n".join(m.value for m in at.markdown)
    assert "The models agree." in text and "How the maps of sface and dlib_resnet agree" in text and "CAM (exact decomposition)" in text
    assert len(at.container(key="faces2-grid").get("image")) == 2  # dlib's CAM for face A and face B
    at.button(key="export").click().run()
    assert {b.label for b in at.download_button} == {"Download model_comparison.html", "Download model_comparison.json"}


def _explore(at: AppTest):
    """The Explore tab (the fourth) of a page that has run."""
    return at.tabs[3]


def test_the_explore_tab_pages_through_a_saved_batch_and_opens_a_pair_of_the_page(tmp_path):
    """230 saved pairs (as ``core.batch`` writes them; every tenth failed), put in the
    session as a finished run leaves them: the table shows 50 lines a page, the page box
    moves it (a page past the end shows the last), and "Open pair" offers that page's pairs
    and opens the one picked."""
    from apps.explore import open_explore
    from core.batch import BatchRow, write_rows

    write_rows(tmp_path / "pairs.csv", [BatchRow(i, f"x{i}.jpg", f"y{i}.jpg", error=f"x{i}.jpg: no face found") for i in range(230)], [])
    at = AppTest.from_file(SCRIPT, default_timeout=TIMEOUT)
    at.session_state["explore"] = open_explore(tmp_path)
    at.run()
    assert not at.exception
    tab = _explore(at)
    assert list(tab.dataframe[0].value["#"]) == list(range(50))
    assert any(c.value.startswith("rows 1-50 of 230 shown (page 1 of 5)") for c in tab.caption), [c.value for c in tab.caption]
    assert at.selectbox(key="explore_pick").options == [str(i) for i in range(50)]
    at.number_input(key="explore_page").set_value(4).run()
    assert not at.exception
    tab = _explore(at)
    assert list(tab.dataframe[0].value["#"]) == list(range(150, 200))
    assert any(c.value.startswith("rows 151-200 of 230 shown (page 4 of 5)") for c in tab.caption)
    pick = at.selectbox(key="explore_pick")
    assert pick.options == [str(i) for i in range(150, 200)] and pick.value == 150
    pick.set_value(179).run()
    assert not at.exception
    assert any(w.value.startswith("Pair 179: x179.jpg vs y179.jpg could not be compared") for w in _explore(at).warning)
    at.number_input(key="explore_page").set_value(99).run()  # past the end: the last page, and the box says so
    assert not at.exception
    assert at.number_input(key="explore_page").value == 5 and list(_explore(at).dataframe[0].value["#"]) == list(range(200, 230))
    assert at.selectbox(key="explore_pick").options == [str(i) for i in range(200, 230)]


@pytest.mark.slow
@pytest.mark.needs_data
def test_the_explore_tab_runs_uploaded_files_and_opens_a_pair():
    """A pairs CSV and its photos uploaded to the Explore tab: the batch runs, the table has
    a line per pair and the pair picked shows its maps in the method grid."""
    from ..conftest import DEEPFACE

    at = _page()
    csv = b"file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg5.jpg,missing.jpg,1\n"
    files = [("pairs.csv", csv, "text/csv")] + [(n, (DEEPFACE / n).read_bytes(), "image/jpeg") for n in ("img5.jpg", "img10.jpg", "img12.jpg")]
    at.file_uploader(key="explore_upload").set_value(files)
    at.multiselect(key="explore_methods").set_value(["cam"])
    at.number_input(key="explore_per_label").set_value(0)
    at.button(key="explore_run").click().run()
    assert not at.exception and not _explore(at).error, [e.value for e in _explore(at).error]
    tab = _explore(at)
    assert any("**3** pairs: 2 compared, 1 failed" in m.value for m in tab.markdown)
    table = tab.dataframe[0].value
    assert list(table["#"]) == [0, 1, 2] and list(table["decision"])[:2] == ["same", "different"]
    assert any(c.value == "3 of 3 pairs shown." for c in tab.caption)
    assert at.selectbox(key="explore_pick").value == 0
    assert any(m.value.startswith("**The same person") and "the decision is **right**" in m.value for m in tab.markdown)
    assert len(at.container(key="explore-grid").get("image")) == 2  # CAM for face A and face B
    at.selectbox(key="explore_pick").set_value(2).run()  # the pair that could not be compared says why
    assert not at.exception and any("missing.jpg" in w.value for w in _explore(at).warning)


def test_the_explore_tab_pages_through_a_results_store(tmp_path):
    """A results store (core.batch.parquet) in the session as open_explore gives it: each page
    is a DuckDB query over the store, the same 50 lines a page."""
    from apps.explore import open_explore
    from tests.test_batch_store import _synthetic

    _synthetic(tmp_path / "store", 230)
    at = AppTest.from_file(SCRIPT, default_timeout=TIMEOUT)
    at.session_state["explore"] = open_explore(tmp_path / "store")
    at.run()
    assert not at.exception
    assert list(_explore(at).dataframe[0].value["#"]) == list(range(50))
    at.number_input(key="explore_page").set_value(4).run()
    assert not at.exception
    tab = _explore(at)
    assert list(tab.dataframe[0].value["#"]) == list(range(150, 200))
    assert any(c.value.startswith("rows 151-200 of 230 shown (page 4 of 5)") for c in tab.caption)
