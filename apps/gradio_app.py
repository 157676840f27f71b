"""The Gradio app: a face-verification tab (two photos -> decision, C-Score, aligned crops,
one panel per chosen explanation method, the region table, the concepts chart), a chest
X-ray tab, questions about the last result, an explorer for a whole pairs file, and the
audit report.

Layout and wiring only: every computation is a ``core`` call made by the handlers of
``apps.handlers`` (shared with the Streamlit app), which are tested without a browser;
``build_demo`` wires them into ``gr.Blocks``. Work that uses the model (comparisons, X-rays,
batches) shares one queue with one slot (``concurrency_id="model"``).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from apps.handlers import (
    CXR_SALIENCY,
    INTRO,
    PRESETS,
    REGION_HEADERS,
    TITLE,
    CXRModels,
    Runners,
    ask,
    compare_faces,
    confidence_bar,
    cost_text,
    diagnose_xray,
    example_pairs,
    explanation_panels,
    export_report,
    faithfulness_words,
    figure,
    method_choices,
    model_choices,
    runner_capabilities,
    work_dir,
)
from apps.uploads import BUNDLE_SUFFIXES, server_paths_allowed
from apps.work import ServerStoppingError, run_cancellable
from core.errors import XFVError
from core.io import load_image
from core.registry import explainer_names

__all__ = ["build_demo", "compare_faces", "confidence_bar", "cost_text", "explanation_panels", "export_report", "face_image",
           "faithfulness_words", "method_choices", "read_upload", "runner_capabilities"]  # fmt: skip

log = logging.getLogger(__name__)

#: Most bytes one upload may have (``launch(max_file_size=...)``).
MAX_UPLOAD = "20mb"


def read_upload(payload: Any) -> np.ndarray | None:
    """An uploaded photo read by ``core.io.load_image`` (size limits, EXIF orientation, clear
    messages): a file that is not an image gives the user a sentence saying so instead of a
    decoder's traceback. Webcam and clipboard pictures arrive the same way."""
    if payload is None:
        return None
    path = getattr(payload, "path", None)
    if path is None or not Path(path).is_file():
        raise gr.Error("The photo did not arrive; upload it again.")
    name = getattr(payload, "orig_name", None) or Path(path).name
    stream = io.BytesIO(Path(path).read_bytes())
    stream.name = name  # load_image names the file in its messages
    try:
        return load_image(stream)
    except XFVError as e:
        raise gr.Error(str(e)) from None


def face_image(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` input whose uploads go through ``read_upload`` (an instance override:
    a subclass would make Gradio write a .pyi stub next to this file)."""
    comp = gr.Image(type="numpy", sources=["upload", "webcam", "clipboard"], height=360, **kwargs)
    comp.preprocess = read_upload  # type: ignore[method-assign]
    return comp


#: Photo types the Explore upload takes besides the CSV and .zip.
PHOTO_SUFFIXES = sorted(BUNDLE_SUFFIXES - {".csv"})


async def cancellable(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` through ``apps.work.run_cancellable``: a cancelled request stops its
    work (and holds the model's queue slot until it has); a stopping server answers with
    a message."""
    try:
        return await run_cancellable(fn, *args)
    except ServerStoppingError as e:
        raise gr.Error(str(e)) from None


def _panel_updates(panels: list[dict[str, Any]], slots: list[str]) -> list[Any]:
    """Visibility, title, picture and words of every method's panel slot."""
    by_method = {p["method"]: p for p in panels}
    out: list[Any] = []
    for name in slots:
        p = by_method.get(name)
        if p is None:
            out += [gr.update(visible=False), "", None, ""]
            continue
        if p["error"]:
            title, words = f"### {p['label']}", f"**Failed:** {p['error']}"
        else:
            title, words = f"### {p['caption']}", "\n".join(f"- {t}" for t in p["text"])
        out += [gr.update(visible=True), title, p["image"], words]
    return out


def build_demo(
    runner: Any = None, gallery: str | None = None, examples: str | None = None, cxr: CXRModels | None = None, chat: Any = None
) -> gr.Blocks:
    """The ``gr.Blocks`` app. ``runner``: the face model's ``Runner`` (the offline default if
    none; the model menu makes others on demand); ``gallery`` (default ``XFV_GALLERY``): the
    folder or identities CSV SDD compares against; ``examples`` (default ``XFV_EXAMPLES``):
    a folder of example pairs (``apps.handlers.example_pairs``); ``cxr``: the chest X-ray
    model (default: ``XFV_CXR_CLIP`` / BiomedCLIP, with ``XFV_CXR_HEAD``); ``chat``: the
    question answerer (default ``core.chat.Chat()``)."""
    runners = Runners(runner)
    sdd_gallery = gallery or os.environ.get("XFV_GALLERY") or None
    pairs = example_pairs(examples or os.environ.get("XFV_EXAMPLES"))
    cxr_models = cxr or CXRModels()
    slots = explainer_names()

    def on_model(model):
        caps = runner_capabilities(runners.get(model))
        choices = method_choices(caps)
        keep = [k for _, k in choices if k == "xmap3"]
        note = "" if caps is not None else "_The weights of this model are not here: every method is listed, and running says what to download._"
        return gr.update(choices=choices, value=keep), note

    async def on_compare(model, a, b, methods, preset, scores, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        return await cancellable(compare_now, model, a, b, methods, preset, scores, progress)

    def compare_now(model, a, b, methods, preset, scores, progress):
        out = compare_faces(runners.get(model), a, b, methods, preset, progress=lambda f, msg: progress(f, desc=msg), deletion_scores=bool(scores),
                            gallery=sdd_gallery)  # fmt: skip
        if not out["ok"]:
            return [out["message"], "", {}, None, None, out.get("words", ""), None, gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None), *_panel_updates([], slots)]  # fmt: skip
        charts = out["charts"]
        plot = gr.update(visible=bool(charts), value=figure(charts[0][1]) if charts else None)
        regions = gr.update(visible=bool(out["regions"]), value=out["regions"] or None)
        last = {"kind": "faces", "result": out["result"], "faithfulness": out["faithfulness"]}
        words = "\n\n".join(f"**{p['label']}**" + "".join(f"\n- {t}" for t in p["text"])
                              for p in out["panels"] if not p["error"] and p["image"] is None)  # fmt: skip
        return [out["message"], out["bar"], out["details"], out["crop_a"], out["crop_b"], words, last, plot, regions,
                *_panel_updates(out["panels"], slots)]  # fmt: skip

    def on_export(last):
        if not last or last.get("kind") != "faces":
            raise gr.Error("Compare two photos first; the report is of the last comparison.")
        return export_report(last["result"], last["faithfulness"])

    async def on_xray(path, method):
        return await cancellable(xray_now, path, method)

    def xray_now(path, method):
        out = diagnose_xray(cxr_models, path, method)
        if not out["ok"]:
            return out["message"], "", gr.update(visible=False, value=None), None, None, "", None
        last = {"kind": "cxr", "result": out["result"]}
        return out["message"], out["words"], gr.update(visible=True, value=figure(out["chart"])), out["image"], out["saliency"], \
            out["saliency_caption"], last  # fmt: skip

    def on_ask(question, history, last):
        history = list(history or [])
        reply = ask(chat, last, question)
        if question and question.strip():
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        return history, ""

    first = runners.get()
    caps = runner_capabilities(first)
    choices = method_choices(caps)

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        last = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Face verification", id="faces"):
                with gr.Row():
                    model = gr.Dropdown(model_choices(), value=first.model_name, elem_id="model",
                                        label="Face model (offline default first; others need their weights)")  # fmt: skip
                    model_note = gr.Markdown()
                with gr.Row():
                    img_a = face_image(label="Photo A (probe)", elem_id="photo_a")
                    img_b = face_image(label="Photo B (reference)", elem_id="photo_b")
                if pairs:
                    gr.Examples(pairs, [img_a, img_b], label="Example pairs")
                with gr.Row():
                    default = ["xmap3"] if any(k == "xmap3" for _, k in choices) else []
                    methods = gr.CheckboxGroup(choices, value=default, label="Explanation methods", elem_id="methods")
                    preset = gr.Radio([(v, k) for k, v in PRESETS.items()], value="fast", label="Preset", elem_id="preset")
                    scores = gr.Checkbox(value=True, label="Deletion score of each map on this pair (against a random map)", elem_id="deletion")
                cost = gr.Markdown(cost_text(first, default, "fast"), elem_id="cost")
                compare = gr.Button("Compare", variant="primary", elem_id="compare")
                verdict = gr.Markdown(elem_id="verdict")
                bar = gr.HTML(elem_id="cscore")
                with gr.Row():
                    crop_a = gr.Image(label="Aligned face A", interactive=False, elem_id="crop_a")
                    crop_b = gr.Image(label="Aligned face B", interactive=False, elem_id="crop_b")
                gr.Markdown("Maps: face A left, face B right; green: similar, red: dissimilar (heat: relevance).")
                panel_parts: list[Any] = []
                for name in slots:
                    with gr.Column(visible=False, elem_id=f"panel-{name}", elem_classes=["method-panel"]) as col:
                        title = gr.Markdown()
                        pic = gr.Image(show_label=False, interactive=False, elem_id=f"map-{name}")
                        text = gr.Markdown()
                    panel_parts += [col, title, pic, text]
                words = gr.Markdown(elem_id="words")
                concepts = gr.Plot(label="Concept scores", visible=False, elem_id="concepts")
                regions = gr.Dataframe(headers=REGION_HEADERS, label="Facial regions of each map", visible=False, interactive=False,
                                       elem_id="regions")  # fmt: skip
                details = gr.JSON(label="Details (model, weights hash, threshold, parameters, timings, scores)")
                with gr.Row():
                    export = gr.Button("Audit report (HTML + JSON)", elem_id="export")
                    report_files = gr.File(label="Report files", file_count="multiple", interactive=False, elem_id="report")
            with gr.Tab("Chest X-ray", id="cxr"):
                gr.Markdown("Pleural effusion on one chest X-ray (PNG, JPEG or DICOM), explained by radiology descriptors "
                            "(the concept bottleneck of Yalavarthi and Ratha over BiomedCLIP).")  # fmt: skip
                with gr.Row():
                    xray = gr.File(label="Chest X-ray", file_types=[".png", ".jpg", ".jpeg", ".dcm", ".dicom"], type="filepath", elem_id="xray")
                    sal_method = gr.Radio([(v, k) for k, v in CXR_SALIENCY.items()], value="vit_lrp", label="Saliency map")
                diagnose = gr.Button("Diagnose", variant="primary", elem_id="diagnose")
                x_verdict = gr.Markdown(elem_id="cxr_verdict")
                x_words = gr.Markdown(elem_id="cxr_words")
                x_chart = gr.Plot(label="Descriptors", visible=False)
                with gr.Row():
                    x_crop = gr.Image(label="What the model saw", interactive=False)
                    x_map = gr.Image(label="Saliency", interactive=False)
                x_caption = gr.Markdown()
            with gr.Tab("Ask about the result", id="chat"):
                gr.Markdown("Questions about the last comparison or X-ray (e.g. _Which region made them look alike?_, "
                            "_How sure is it?_, _Why not a match?_). Answers come only from the computed results.")  # fmt: skip
                chatbot = gr.Chatbot(label="Answers", elem_id="chatbot", height=360)
                question = gr.Textbox(label="Question", placeholder="How sure is it?", elem_id="question")
                question.submit(on_ask, [question, chatbot, last], [chatbot, question])
            _explore_tab(runners)

        model.change(on_model, [model], [methods, model_note])
        for control in (methods, preset):
            control.change(lambda md, m, p: cost_text(runners.get(md), m, p), [model, methods, preset], cost)
        compare.click(on_compare, [model, img_a, img_b, methods, preset, scores],
                      [verdict, bar, details, crop_a, crop_b, words, last, concepts, regions, *panel_parts],
                      concurrency_limit=1, concurrency_id="model", api_name="compare")  # fmt: skip
        export.click(on_export, [last], [report_files], api_name="report")
        diagnose.click(on_xray, [xray, sal_method], [x_verdict, x_words, x_chart, x_crop, x_map, x_caption, last],
                       concurrency_limit=1, concurrency_id="model", api_name="xray")  # fmt: skip
    return demo


def _explore_tab(runners: Runners) -> None:
    """The explorer and viewer of the X-Map platform for a user's own data: a pairs CSV (or
    a folder of identity sub-folders) through the batch path with progress, a table to sort
    and filter, and the maps of the row clicked (handlers: ``apps.explore``)."""
    from apps import explore

    def frame(table: dict[str, Any]) -> dict[str, Any]:
        return gr.update(value={"headers": table["headers"], "data": table["values"]})

    async def on_run(model, upload, methods, preset, per_label, folder=None, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        return await cancellable(run_now, model, upload, methods, preset, per_label, folder, progress)

    def run_now(model, upload, methods, preset, per_label, folder, progress):
        report = lambda f, msg: progress(f, desc=msg)  # noqa: E731
        folder = (folder or "").strip() if server_paths else ""
        if folder and not upload:  # the operator allowed server paths (XFV_SERVER_PATHS=1): a local installation
            out = explore.run_explore(runners.get(model), folder, methods or [], preset, per_label or None, work_dir("explore"), report)
        else:
            out = explore.run_explore_uploads(runners.get(model), upload, methods or [], preset, per_label or None, work_dir("explore"), report)
        if not out["ok"]:
            return out["message"], gr.update(value=None), None
        state = {"out": out["out"], "rows": out["rows"], "methods": out["methods"], "shown": out["rows"]}
        return out["summary"], frame(out["table"]), state

    def on_filter(state, decision, correct, min_c, text, sort_by, descending):
        if not state:
            return gr.update(), state, ""
        out = explore.explore_table(state["rows"], state["methods"], decision, correct, min_c, text, sort_by, descending)
        if not out["ok"]:
            return gr.update(), state, out["message"]
        return frame(out["table"]), {**state, "shown": out["rows"]}, out["message"]

    def on_select(state, evt: gr.SelectData):
        if not state:
            return "Run a batch first.", None, None, [], ""
        row = evt.row_value or []
        index = int(row[0]) if row and str(row[0]).lstrip("-").isdigit() else explore.selected_index(state["shown"], evt.index)
        view = explore.explore_view(state["out"], index)
        if not view["ok"]:
            return view["message"], None, None, [], ""
        return view["message"], view["crop_a"], view["crop_b"], view["gallery"], view["words"]

    server_paths = server_paths_allowed()
    with gr.Tab("Explore", id="explore"):
        gr.Markdown("Upload a pairs CSV (`file_x,file_y[,same]`, or `file,identity`) with its photos, or one `.zip` of the CSV and the "
                    "photos (folders kept; a `.zip` of identity sub-folders works without a CSV). The pairs go through the batch "
                    "path (`python -m core batch`); then sort and filter them and click one to see its maps. Names in the CSV "
                    "are relative to it and must be in the upload.")  # fmt: skip
        with gr.Row():
            upload = gr.File(label="Pairs CSV and photos, or a .zip", file_types=[".csv", ".zip", *PHOTO_SUFFIXES], file_count="multiple",
                             type="filepath", elem_id="explore_upload")  # fmt: skip
            # a server path box only where the operator allows it (XFV_SERVER_PATHS=1): never on a public server
            folder = gr.Textbox(label="...or a CSV or folder on this server", placeholder="../shared/data/faces/deepface/pairs.csv") \
                if server_paths else None  # fmt: skip
        with gr.Row():
            model = gr.Dropdown(model_choices(), value=runners.default, label="Face model")
            methods = gr.CheckboxGroup(method_choices(), value=["xmap3"], label="Explanation methods")
            preset = gr.Radio([(v, k) for k, v in PRESETS.items()], value="fast", label="Preset")
            per_label = gr.Number(value=5, precision=0, label="Pairs per label (0: all)")
        run = gr.Button("Run the batch", variant="primary", elem_id="explore_run")
        summary = gr.Markdown(elem_id="explore_summary")
        with gr.Row():
            decision = gr.Dropdown(list(explore.DECISION_CHOICES), value="any", label="Decision")
            correct = gr.Dropdown(list(explore.CORRECT_CHOICES), value="any", label="Correctness")
            min_c = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="C-Score at least")
            text = gr.Textbox(label="File name contains")
            sort_by = gr.Dropdown(["index", "c_score", "similarity", "correct", "decision", "runtime_s"], value="index", label="Sort by")
            descending = gr.Checkbox(value=False, label="Descending")
        shown = gr.Markdown()
        table = gr.Dataframe(label="Pairs (click a row to see its maps)", interactive=False, elem_id="explore_table")
        state = gr.State(None)
        view_msg = gr.Markdown(elem_id="explore_verdict")
        with gr.Row():
            view_a = gr.Image(label="Face A", interactive=False)
            view_b = gr.Image(label="Face B", interactive=False)
        view_maps = gr.Gallery(label="Maps of the pair (face A left, face B right)", columns=1, height="auto", elem_id="explore_maps")
        view_words = gr.Markdown()
        inputs = [model, upload, methods, preset, per_label] + ([folder] if folder is not None else [])
        run.click(on_run, inputs, [summary, table, state], concurrency_limit=1, concurrency_id="model")
        filters = [state, decision, correct, min_c, text, sort_by, descending]
        for control in filters[1:]:
            control.change(on_filter, filters, [table, state, shown])
        table.select(on_select, [state], [view_msg, view_a, view_b, view_maps, view_words])


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None) -> None:
    """Serve on 127.0.0.1 (``GRADIO_SERVER_NAME`` to change), no share link, uploads capped."""
    demo.queue(default_concurrency_limit=1).launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        share=False,
        max_file_size=MAX_UPLOAD,
    )
