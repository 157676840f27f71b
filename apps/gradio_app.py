"""The Gradio app: two face uploads -> decision, similarity, C-Score, the aligned crops and
the chosen explanation maps side by side with their region sentences.

Layout and wiring only; every computation is a ``core`` call. ``compare_faces`` is the
handler, testable without a browser; ``build_demo`` wires it into ``gr.Blocks``.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core import Runner, XFVError, confidence_words, verdict_sentence
from core.errors import ModelUnavailableError
from core.registry import explainer_names, explainer_spec
from core.render import render_map, side_by_side

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


PRESETS = {"fast": "fast (one occlusion scale, coarse regions: for a CPU)", "full": "full (the papers' settings)"}


def method_choices(capabilities: frozenset[str] | set[str] | None = None) -> list[tuple[str, str]]:
    """(label, key) of the registered explanation methods, for the method toggles: those the
    model can run when its ``capabilities`` are given (``core.runner.model_capabilities``),
    else all of them."""
    return [(explainer_spec(n).label, n) for n in explainer_names() if capabilities is None or explainer_spec(n).requires <= set(capabilities)]


def runner_capabilities(runner: Runner) -> frozenset[str] | None:
    """What the runner's model offers, or None when it cannot be loaded here (then every
    method is listed and each says what it needs)."""
    from core.runner import model_capabilities

    try:
        return model_capabilities(runner.embedder)
    except ModelUnavailableError:
        return None


def export_report(result: Any, faithfulness: dict | None, folder: str | None = None) -> list[str]:
    """The audit report of the last comparison (``core.report``): an HTML and a JSON file in
    ``folder`` (a new temporary folder by default), for download."""
    import tempfile

    from core.report import write_report

    if result is None:
        raise ValueError("compare two photos first")
    out = Path(folder or tempfile.mkdtemp(prefix="xfv-report-"))
    return [str(p) for p in write_report(result, out / "face_comparison", faithfulness or {})]


def cost_text(runner: Runner, methods: list[str] | None, preset: str) -> str:
    """What the chosen methods cost before anything runs."""
    if not methods:
        return "No explanation method chosen: only the decision and the C-Score are computed."
    try:
        cost = runner.forward_passes(methods, preset=preset)
    except XFVError as e:
        return f"Cannot cost these methods: {e}"
    return (f"These methods cost at most **{cost['total']:,}** forward passes of the model per pair "
            f"(preset: {preset}; methods of one family share theirs; reruns come from the cache).")  # fmt: skip


def faithfulness_words(scores: dict[str, float] | None, random: dict[str, float] | None) -> str:
    """The deletion score of one method on this pair, next to the random map's."""
    if not scores:
        return ""
    text = f"deletion score {scores['deletion_auc']:+.3f}"
    if random:
        text += f" (random map {random['deletion_auc']:+.3f}; lower is more faithful)"
    return text


def explanation_panels(res, faithfulness: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One panel per method: both faces' maps side by side, its runtime, its deletion score
    on this pair (when measured), its words or its error."""
    faithfulness = faithfulness or {}
    random = faithfulness.get("random")
    panels = []
    faces = [f.image for f in res.pair]
    for e in res.explanations:
        panel: dict[str, Any] = {"method": e.method, "label": e.label, "error": e.error, "text": list(e.text), "image": None,
                                 "caption": f"{e.label}: {e.runtime_s:.1f} s"}  # fmt: skip
        if e.ok and e.maps:
            pics = [render_map(f, m, e.signed, e.extras.get("display")) for f, m in zip(faces, e.maps, strict=True)]
            panel["image"] = side_by_side(pics)
            preset = e.extras.get("preset")
            fp = f", {int(e.scores['forward_passes'])} forward passes" if "forward_passes" in e.scores else ""
            panel["caption"] = f"{e.label}: {e.runtime_s:.1f} s{fp}" + (f", preset {preset}" if preset else "")
            panel["faithfulness"] = faithfulness.get(e.method)
            deletion = faithfulness_words(panel["faithfulness"], random)
            if deletion:
                panel["caption"] += f"; {deletion}"
        panels.append(panel)
    return panels


def compare_faces(runner: Runner, image_a: np.ndarray | None, image_b: np.ndarray | None, methods: list[str] | None = None,
                  preset: str = "fast", progress: Any = None, deletion_scores: bool = True,
                  gallery: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything the page shows for one pair. Errors come back as a message, not a raise;
    a method that fails shows its error in its own panel while the others still show.
    ``deletion_scores`` adds each map's deletion score on this pair (and a random map's);
    ``gallery`` (a folder or identities CSV) is what SDD compares against."""
    if image_a is None or image_b is None:
        return {"ok": False, "message": "Upload two photos, one on each side."}
    knobs: dict[str, Any] = {"preset": preset}
    if gallery:
        knobs["gallery"] = gallery
    try:
        res = runner.explain(image_a, image_b, methods=methods or (), progress=progress, **knobs)
        if progress is not None and deletion_scores and res.explanations:
            progress(1.0, "measuring the deletion scores")
        faith = runner.faithfulness(res) if deletion_scores else {}
    except ModelUnavailableError as e:  # say which weights are missing; the measured geometry still shows
        out = {"ok": False, "message": f"The model cannot run here: {e}", "words": ""}
        try:
            free = runner.explain_without_model(image_a, image_b, list(dict.fromkeys([*(methods or ()), "geometry"])))
        except XFVError as why:
            out["words"] = f"Nor could the photos be measured: {why}"
            return out
        out["words"] = "\n\n".join(
            f"**{x.label}** (needs no model)" + "".join(f"\n- {t}" for t in x.text) if x.ok else f"**{x.label}**: failed: {x.error}" for x in free
        )
        return out
    except XFVError as e:
        return {"ok": False, "message": f"Could not compare these photos: {e}"}
    verdict = verdict_sentence(res)
    details = res.to_dict()
    for e in details["explanations"]:
        e["extras"].pop("regions", None)  # shown as sentences; the full tables are in the CLI's JSON
    panels = explanation_panels(res, faith)
    details["faithfulness"] = faith
    words = []
    for p in panels:
        if p["error"]:
            words.append(f"**{p['label']}**: failed: {p['error']}")
        else:
            words.append(f"**{p['caption']}**\n" + "".join(f"\n- {t}" for t in p["text"]))
    return {
        "ok": True,
        "result": res,
        "faithfulness": faith,
        "message": ("**" + verdict + "**") + ("".join(f"\n\n_Note: {n}_" for n in res.notes)),
        "bar": confidence_bar(res.c_score, res.same),
        "details": details,
        "crop_a": res.pair.a.image,
        "crop_b": res.pair.b.image,
        "panels": panels,
        "gallery": [(p["image"], p["caption"]) for p in panels if p["image"] is not None],
        "words": "\n\n".join(words),
    }


def build_demo(runner: Runner | None = None, gallery: str | None = None):
    """The ``gr.Blocks`` app over one ``Runner`` (the offline default model if none).
    ``gallery`` (default: the ``XFV_GALLERY`` environment variable) is the folder or
    identities CSV SDD takes its competing identities from."""
    import os

    import gradio as gr

    runner = runner or Runner()
    sdd_gallery = gallery or os.environ.get("XFV_GALLERY") or None

    def on_compare(a, b, methods, preset, scores, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        out = compare_faces(runner, a, b, methods, preset, progress=lambda f, msg: progress(f, desc=msg), deletion_scores=bool(scores),
                            gallery=sdd_gallery)  # fmt: skip
        if not out["ok"]:
            return out["message"], "", {}, None, None, [], out.get("words", ""), None
        last = {"result": out["result"], "faithfulness": out["faithfulness"]}
        return out["message"], out["bar"], out["details"], out["crop_a"], out["crop_b"], out["gallery"], out["words"], last

    def on_export(last):
        if not last:
            raise gr.Error("Compare two photos first; the report is of the last comparison.")
        return export_report(last["result"], last["faithfulness"])

    caps = runner_capabilities(runner)
    choices = method_choices(caps)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Row():
            img_a = gr.Image(label="Photo A (probe)", type="numpy", sources=["upload", "webcam", "clipboard"])
            img_b = gr.Image(label="Photo B (reference)", type="numpy", sources=["upload", "webcam", "clipboard"])
        with gr.Row():
            methods = gr.CheckboxGroup(choices, value=["xmap3"] if any(k == "xmap3" for _, k in choices) else [], label="Explanation methods",
                                       elem_id="methods")  # fmt: skip
            preset = gr.Radio([(v, k) for k, v in PRESETS.items()], value="fast", label="Preset", elem_id="preset")
            scores = gr.Checkbox(value=True, label="Deletion score of each map on this pair (against a random map)", elem_id="deletion")
        cost = gr.Markdown(cost_text(runner, ["xmap3"], "fast"), elem_id="cost")
        compare = gr.Button("Compare", variant="primary")
        verdict = gr.Markdown(elem_id="verdict")
        bar = gr.HTML(elem_id="cscore")
        with gr.Row():
            crop_a = gr.Image(label="Aligned face A", interactive=False, elem_id="crop_a")
            crop_b = gr.Image(label="Aligned face B", interactive=False, elem_id="crop_b")
        gallery = gr.Gallery(label="Explanations (face A left, face B right; green: similar, red: dissimilar)",
                             columns=2, height="auto", elem_id="maps")  # fmt: skip
        words = gr.Markdown(elem_id="words")
        details = gr.JSON(label="Details (model, weights hash, threshold, parameters, timings, scores)")
        with gr.Row():
            export = gr.Button("Audit report (HTML + JSON)", elem_id="export")
            report_files = gr.File(label="Report files", file_count="multiple", interactive=False, elem_id="report")
        last = gr.State(None)
        for control in (methods, preset):
            control.change(lambda m, p: cost_text(runner, m, p), [methods, preset], cost)
        compare.click(on_compare, [img_a, img_b, methods, preset, scores], [verdict, bar, details, crop_a, crop_b, gallery, words, last],
                      concurrency_limit=1)  # fmt: skip
        export.click(on_export, [last], [report_files])
    return demo
