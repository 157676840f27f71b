"""The Gradio app: two face uploads -> decision, similarity, C-Score and the aligned crops.

Layout and wiring only; every computation is a ``core`` call. ``compare_faces`` is the
handler, testable without a browser; ``build_demo`` wires it into ``gr.Blocks``.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np

from core import Runner, XFVError, confidence_words, verdict_sentence

log = logging.getLogger(__name__)

TITLE = "Explainable face verification"
INTRO = (
    "Upload two face photos. The app finds the largest face in each, aligns it, compares "
    "the two with the selected model and says how sure it is (the C-Score of Knoche et al.: "
    "the probability, learnt from labelled pairs, that the decision is right)."
)


def confidence_bar(c_score: float | None, same: bool) -> str:
    """An HTML bar for a C-Score in [0.5, 1] (the UI shows numbers it is given, nothing more)."""
    if c_score is None:
        return "<p>No C-Score: this model has no calibration file.</p>"
    pct = 100.0 * c_score
    colour = "#2e7d32" if same else "#c62828"
    return (
        '<div style="font-family:sans-serif">'
        f"<div>C-Score <b>{c_score:.3f}</b> ({html.escape(confidence_words(c_score))})</div>"
        '<div style="background:#ddd;border-radius:4px;height:14px;width:100%;max-width:420px">'
        f'<div style="background:{colour};height:14px;border-radius:4px;width:{pct:.1f}%"></div></div>'
        '<div style="font-size:12px;color:#555">0.5 = a coin toss, 1 = certain</div></div>'
    )


def compare_faces(runner: Runner, image_a: np.ndarray | None, image_b: np.ndarray | None) -> dict[str, Any]:
    """Everything the page shows for one pair. Errors come back as a message, not a raise."""
    if image_a is None or image_b is None:
        return {"ok": False, "message": "Upload two photos, one on each side."}
    try:
        res = runner.verify(image_a, image_b)
    except XFVError as e:
        return {"ok": False, "message": f"Could not compare these photos: {e}"}
    verdict = verdict_sentence(res)
    details = {k: v for k, v in res.to_dict().items() if k != "explanations"}
    return {
        "ok": True,
        "message": ("**" + verdict + "**") + ("".join(f"\n\n_Note: {n}_" for n in res.notes)),
        "bar": confidence_bar(res.c_score, res.same),
        "details": details,
        "crop_a": res.pair.a.image,
        "crop_b": res.pair.b.image,
    }


def build_demo(runner: Runner | None = None):
    """The ``gr.Blocks`` app over one ``Runner`` (the offline default model if none)."""
    import gradio as gr

    runner = runner or Runner()

    def on_compare(a, b):
        out = compare_faces(runner, a, b)
        if not out["ok"]:
            return out["message"], "", {}, None, None
        return out["message"], out["bar"], out["details"], out["crop_a"], out["crop_b"]

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Row():
            img_a = gr.Image(label="Photo A (probe)", type="numpy", sources=["upload", "webcam", "clipboard"])
            img_b = gr.Image(label="Photo B (reference)", type="numpy", sources=["upload", "webcam", "clipboard"])
        compare = gr.Button("Compare", variant="primary")
        verdict = gr.Markdown(elem_id="verdict")
        bar = gr.HTML(elem_id="cscore")
        with gr.Row():
            crop_a = gr.Image(label="Aligned face A", interactive=False, elem_id="crop_a")
            crop_b = gr.Image(label="Aligned face B", interactive=False, elem_id="crop_b")
        details = gr.JSON(label="Details (model, weights hash, threshold, timings)")
        compare.click(on_compare, [img_a, img_b], [verdict, bar, details, crop_a, crop_b], concurrency_limit=1)
    return demo
