import numpy as np
import pytest

from apps.gradio_app import build_demo, compare_faces, confidence_bar
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
    assert "0.970" in confidence_bar(0.97, True) and "97.0%" in confidence_bar(0.97, True)
    assert "No C-Score" in confidence_bar(None, False)


def test_build_demo(runner):
    import gradio as gr

    demo = build_demo(runner)
    assert isinstance(demo, gr.Blocks)
