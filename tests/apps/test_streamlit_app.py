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
