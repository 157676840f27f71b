"""The Gradio app: a face-verification tab (two photos -> decision, C-Score, aligned crops,
the method grid with its legend and viewer, the region table, the concepts chart), a chest
X-ray tab, questions about the last result, an explorer for a whole pairs file
(``apps.gradio_explore``), and the audit report.

Layout and wiring only: every computation is a ``core`` call made by the handlers of
``apps.handlers`` (shared with the Streamlit app), which are tested without a browser;
``build_demo`` wires them into ``gr.Blocks``. Work that uses the model (comparisons, X-rays,
batches) shares one queue with one slot (``concurrency_id="model"``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import gradio as gr

from apps.gpu import GPU_SECONDS, spaces
from apps.gradio_explore import explore_tab
from apps.gradio_parts import (
    PHOTO_SUFFIXES,
    SUGGESTION_SLOTS,
    UploadProblem,
    _last_scope,
    _method_notes,
    _viewer_updates,
    cancellable,
    face_image,
    on_cell,
    on_opacity,
    photo_note,
    preview_xray,
    read_upload,
    xray_status_text,
)
from apps.grid import gallery_columns, gallery_items, legend_html, viewer
from apps.handlers import (
    CXR_SALIENCY,
    INTRO,
    PRESETS,
    REGION_HEADERS,
    TITLE,
    CXRModels,
    Runners,
    ask,
    chat_scope,
    chat_suggestions,
    compare_faces,
    confidence_bar,
    cost_text,
    diagnose_xray,
    example_pairs,
    explanation_panels,
    export_report,
    faces_in_photo,
    faithfulness_words,
    figure,
    method_choices,
    model_choices,
    numbers_markdown,
    region_rows,
    runner_capabilities,
    work_dir,
)
from apps.knob_controls import knob_info, knob_label, knob_specs, knobs_from
from apps.model_compare import NONE, compare_pair, cost_both, export_comparison, model_captions, second_grid, second_model_choices
from apps.uploads import gallery_from_uploads, upload_paths
from core.errors import XFVError
from core.registry import explainer_spec, needs_gallery
from core.render import draw_faces

__all__ = ["UploadProblem", "build_demo", "compare_faces", "confidence_bar", "cost_text", "explanation_panels", "export_report",
           "face_image", "faithfulness_words", "method_choices", "photo_note", "read_upload", "runner_capabilities"]  # fmt: skip

log = logging.getLogger(__name__)

#: Most bytes one upload may have (``launch(max_file_size=...)``): the browser refuses larger
#: files with a toast before sending them. A face photo may have 20 MB
#: (``apps.gradio_parts.MAX_PHOTO_BYTES``), said next to it; X-rays and bundles have their own budgets.
MAX_UPLOAD = "100mb"
#: The method grid's label (with two models, each grid names its model).
GRID_LABEL = "Every method: face A (top row), face B (bottom row); click a map to see it large"


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

    def on_model(model):
        caps = runner_capabilities(runners.get(model))
        choices = method_choices(caps)
        keep = [k for _, k in choices if k == "xmap3"]
        note = "" if caps is not None else "_The weights of this model are not here: every method is listed, and running says what to download._"
        return gr.update(choices=choices, value=keep), note

    async def on_compare(
        model, a, b, methods, preset, scores, uploaded_gallery=None, face_a=None, face_b=None, knob_values=None, model2=NONE,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way)
    ):  # fmt: skip
        return await cancellable(compare_now, model, a, b, methods, preset, scores, uploaded_gallery, progress, (face_a, face_b),
                                 knobs_from(knob_values), model2)  # fmt: skip

    def on_photo(model, image, side):
        """The note next to a photo, its faces to choose from when it holds several, and their
        boxes (kept, so that choosing another face redraws them without detecting again)."""
        if image is None or isinstance(image, UploadProblem):
            return photo_note(image, side), gr.update(value=None, visible=False), gr.update(choices=[], value=None, visible=False), None
        found = faces_in_photo(runners.get(model), image, side)
        several = found["n"] > 1
        return (found["message"], gr.update(value=found["picture"], visible=several),
                gr.update(choices=found["choices"], value=0 if several else None, visible=several),
                found.get("boxes") if several else None)  # fmt: skip

    def on_pick(image, chosen, boxes):
        """The photo's faces again, the chosen one highlighted."""
        if image is None or isinstance(image, UploadProblem) or not boxes:
            return gr.update()
        return draw_faces(image, boxes, int(chosen or 0))

    @spaces.GPU(duration=GPU_SECONDS)  # ZeroGPU lends a GPU for the call on Spaces; a no-op elsewhere (apps.gpu)
    def compare_now(model, a, b, methods, preset, scores, uploaded_gallery, progress, faces=(None, None), knobs=None, model2=NONE):
        problems = [photo_note(x, side) for x, side in ((a, "A"), (b, "B")) if isinstance(x, UploadProblem)]
        if problems:
            return [" ".join(problems), "", {}, None, None, "", None, gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None), gr.update(value=None, visible=False), "", *_viewer_updates(None)]  # fmt: skip
        use = (uploaded_gallery or {}).get("folder") or sdd_gallery
        wanted = list(methods or [])
        waiting = [m for m in wanted if needs_gallery(m)] if not use else []  # not run and failed: said
        out = compare_pair(runners, model, model2, a, b, [m for m in wanted if m not in waiting], preset,
                           progress=lambda f, msg: progress(f, desc=msg), deletion_scores=bool(scores), gallery=use,
                           faces=tuple(None if f is None else int(f) for f in faces), knobs=knobs)  # fmt: skip
        if waiting and out.get("ok"):
            out["panels"] = out["panels"] + [{"method": m, "label": explainer_spec(m).label, "image": None, "text": [],
                                              "error": "needs a gallery of identities: upload one below (a .zip of identity folders, "
                                                       "or an identities CSV with its photos)"} for m in waiting]  # fmt: skip
        if not out["ok"]:
            return [out["message"], "", {}, None, None, out.get("words", ""), None, gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None), gr.update(value=None, visible=False), "", *_viewer_updates(None)]  # fmt: skip
        res = out["result"]
        charts = out["charts"]
        plot = gr.update(visible=bool(charts), value=figure(charts[0][1]) if charts else None)
        labels = list(dict.fromkeys(r[0] for r in out["regions"]))
        regions = gr.update(visible=bool(labels), value=[r for r in out["regions"] if labels and r[0] == labels[0]] or None,
                            label=f"Facial regions of {labels[0]}" if labels else None)  # fmt: skip
        two = out.get("second")  # the second model's answer, when one is chosen
        last = {"kind": "faces", "result": res, "faithfulness": out["faithfulness"], "comparison": out.get("comparison")}
        cells = gallery_items(res, out["faithfulness"])
        shown = [p["method"] for p in out["panels"] if p["image"] is not None]
        grid = gr.update(value=(model_captions(cells, res, res.model) if two else cells) or None, columns=gallery_columns(res), visible=bool(cells),
                         selected_index=None, label=f"First model, {res.model}: {GRID_LABEL}" if two else GRID_LABEL)  # fmt: skip
        notes = _method_notes(out["panels"])
        if two:  # each model's failures and words under its name
            notes = "\n\n".join(f"**{o['result'].model}**:\n\n{t}" for o in (out, two) if (t := _method_notes(o["panels"])))
        view = _viewer_updates(viewer(res, shown[0]) if shown else None)
        if two and shown:  # the viewer opens on the first model's map: say which
            view[0] = view[0].replace("### ", f"### {res.model}: ", 1)
        return [out["message"], out["bar"], out["details"], out["crop_a"], out["crop_b"], notes, last, plot, regions, grid, legend_html(shown),
                *view]  # fmt: skip

    def region_menu(last):
        """The region table's method menu, on the method the table shows first."""
        labels = list(dict.fromkeys(x[0] for x in region_rows(last["result"]))) if last and last.get("kind") == "faces" else []
        return gr.update(choices=labels, value=labels[0] if labels else None)

    def on_region_pick(last, label):
        if not last or last.get("kind") != "faces" or not label:
            return gr.update()
        rows = [r for r in region_rows(last["result"]) if r[0] == label]
        return gr.update(value=rows or None, visible=bool(rows), label=f"Facial regions of {label}")

    def on_gallery(files):
        if not files:
            return None, "_No gallery uploaded: SDD uses " + (f"`{Path(sdd_gallery).name}`" if sdd_gallery else "none, so it is not run") + "._"
        try:
            folder, note = gallery_from_uploads(upload_paths(files), work_dir("gallery"))
        except XFVError as e:
            return None, f"**This gallery cannot be used:** {e}"
        return {"folder": str(folder)}, f"Gallery for SDD: {note}."

    def on_export(last):
        if not last or last.get("kind") != "faces":
            raise gr.Error("Compare two photos first; the report is of the last comparison.")
        if last.get("comparison") is not None:  # two models: the comparison report, each model's report inside
            return export_comparison(last["comparison"])
        return export_report(last["result"], last["faithfulness"])

    def on_second(last):
        """The second model's grid and the comparison table (hidden with one model)."""
        two = second_grid(last)
        return (gr.update(value=two["cells"] or None, visible=bool(two["cells"]), selected_index=None,
                          columns=gallery_columns(two["result"]) if two["result"] else 4,
                          label=f"Second model, {two['model']}: every method, face A (top row), face B (bottom row)"),
                gr.update(value=two["table"], visible=bool(two["table"])))  # fmt: skip

    async def on_xray(path, method):
        return await cancellable(xray_now, path, method)

    @spaces.GPU(duration=GPU_SECONDS)
    def xray_now(path, method):
        out = diagnose_xray(cxr_models, path, method)
        if not out["ok"]:
            return out["message"], "", gr.update(visible=False, value=None), None, None, "", None
        last = {"kind": "cxr", "result": out["result"]}
        return out["message"], out["words"], gr.update(visible=True, value=figure(out["chart"])), out["image"], out["saliency"], \
            out["saliency_caption"], last  # fmt: skip

    def xray_preview(path):
        if not path:
            return None, xray_status_text(cxr_models)
        try:
            return preview_xray(path), xray_status_text(cxr_models)
        except XFVError as e:
            return None, f"**This file cannot be read as an X-ray:** {e}"

    def on_ask(question, history, last):
        history = list(history or [])
        if question and question.strip():
            scope, heading = chat_scope(last)
            if scope is not None and scope != _last_scope(history):  # a new comparison: mark where its answers start
                history.append({"role": "assistant", "content": f"**{heading}**", "metadata": {"title": "New result", "id": scope}})
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": ask(chat, last, question)}]
        return history, ""

    def on_result(last):
        qs = chat_suggestions(last, len(SUGGESTION_SLOTS))
        return [gr.update(value=q, visible=True) for q in qs] + [gr.update(visible=False)] * (len(SUGGESTION_SLOTS) - len(qs))

    first = runners.get()
    caps = runner_capabilities(first)
    choices = method_choices(caps)

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {TITLE}")
        last = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Face verification", id="faces"):
                gr.Markdown(INTRO)
                with gr.Row():
                    model = gr.Dropdown(model_choices(), value=first.model_name, elem_id="model",
                                        label="Face model (offline default first; others need their weights)")  # fmt: skip
                    model2 = gr.Dropdown(second_model_choices(), value=NONE, elem_id="model2", label="Compare with a second model")
                    model_note = gr.Markdown()
                with gr.Row():
                    with gr.Column():
                        img_a = face_image(label="Photo A (probe)", elem_id="photo_a")
                        note_a = gr.Markdown(elem_id="photo_a_note")
                        faces_a = gr.Image(label="Faces in photo A", interactive=False, visible=False, elem_id="photo_a_faces")
                        pick_a = gr.Radio([], label="Face to compare in photo A", visible=False, elem_id="photo_a_pick")
                    with gr.Column():
                        img_b = face_image(label="Photo B (reference)", elem_id="photo_b")
                        note_b = gr.Markdown(elem_id="photo_b_note")
                        faces_b = gr.Image(label="Faces in photo B", interactive=False, visible=False, elem_id="photo_b_faces")
                        pick_b = gr.Radio([], label="Face to compare in photo B", visible=False, elem_id="photo_b_pick")
                if pairs:
                    gr.Examples(pairs, [img_a, img_b], label="Example pairs (genuine and impostor in turn)", examples_per_page=4)
                with gr.Row():
                    default = ["xmap3"] if any(k == "xmap3" for _, k in choices) else []
                    methods = gr.CheckboxGroup(choices, value=default, label="Explanation methods", elem_id="methods")
                    preset = gr.Radio([(v, k) for k, v in PRESETS.items()], value="fast", label="Preset", elem_id="preset")
                    scores = gr.Checkbox(value=True, label="Deletion score of each map on this pair (against a random map)", elem_id="deletion")
                knob_values = gr.State({})
                with gr.Accordion("Advanced settings (each method's knobs, from its own definition; empty: the preset's value)",
                                  open=False, elem_id="advanced"):  # fmt: skip
                    knob_inputs = []
                    specs = knob_specs()
                    for row in range(0, len(specs), 3):  # three a row
                        with gr.Row():
                            for spec in specs[row : row + 3]:
                                kw = {"label": knob_label(spec), "info": knob_info(spec), "elem_id": f"knob-{spec['name']}"}
                                if spec["choices"] is not None:
                                    control = gr.Dropdown([("(preset)", "")] + [(str(c), str(c)) for c in spec["choices"]], value="", **kw)
                                else:  # a number, numbers or a hiding value: typed, the default shown as the placeholder
                                    control = gr.Textbox(value="", placeholder=str(spec["default"]).strip("[]"), **kw)
                                knob_inputs.append((spec["name"], control))
                with gr.Row():
                    gallery_files = gr.File(label="Gallery for SDD (optional): a .zip of identity folders, or an identities CSV with its photos",
                                            file_types=[".zip", ".csv", *PHOTO_SUFFIXES], file_count="multiple", type="filepath",
                                            elem_id="gallery_upload")  # fmt: skip
                    gallery_note = gr.Markdown("_SDD compares against " + (f"`{Path(sdd_gallery).name}`" if sdd_gallery else
                                               "a gallery of identities: upload one to run it") + "._", elem_id="gallery_note")  # fmt: skip
                uploaded_gallery = gr.State(None)
                cost = gr.Markdown(cost_text(first, default, "fast"), elem_id="cost")
                compare = gr.Button("Compare", variant="primary", elem_id="compare")
                verdict = gr.Markdown(elem_id="verdict")
                bar = gr.HTML(elem_id="cscore")
                with gr.Accordion("What the numbers mean", open=False):
                    gr.Markdown(numbers_markdown(), elem_id="numbers")
                with gr.Row():
                    crop_a = gr.Image(label="Aligned face A", interactive=False, elem_id="crop_a")
                    crop_b = gr.Image(label="Aligned face B", interactive=False, elem_id="crop_b")
                legend = gr.HTML(elem_id="legend")
                grid = gr.Gallery(label=GRID_LABEL, columns=4, object_fit="contain", allow_preview=False, height=2 * 300 + 40, visible=False,
                                  elem_id="method-grid")  # fmt: skip
                grid2 = gr.Gallery(columns=4, object_fit="contain", height=2 * 300 + 40, visible=False, elem_id="method-grid-2")
                compare_table = gr.Markdown(visible=False, elem_id="model-compare")
                with gr.Column(elem_id="viewer"):
                    view_title = gr.Markdown("_Compare two photos, then click a map of the grid to see it here._")
                    view_method = gr.State(None)
                    opacity = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Map over photo (0: the photo, 1: the map)", elem_id="opacity")
                    view_image = gr.Image(label="Face A | face B", interactive=False, show_label=True, elem_id="viewer-image")
                    with gr.Row():
                        view_raw = gr.Image(label="The raw maps (one scale for both faces)", interactive=False, elem_id="viewer-raw")
                        with gr.Column():
                            gr.Markdown("Colour bar, in the map's units (both faces on one scale)")
                            view_bar = gr.Image(show_label=False, interactive=False, elem_id="viewer-bar", height=60,
                                                buttons=[])  # fmt: skip
                    view_words = gr.Markdown(elem_id="viewer-words")
                words = gr.Markdown(elem_id="words")
                concepts = gr.Plot(label="Concept scores", visible=False, elem_id="concepts")
                region_pick = gr.Dropdown([], label="Facial regions of", elem_id="region_pick")
                regions = gr.Dataframe(headers=REGION_HEADERS, label="Facial regions of each map", visible=False, interactive=False,
                                       elem_id="regions")  # fmt: skip
                details = gr.JSON(label="Details (model, weights hash, threshold, parameters, timings, scores)")
                with gr.Row():
                    export = gr.Button("Audit report (HTML + JSON)", elem_id="export")
                    report_files = gr.File(label="Report files", file_count="multiple", interactive=False, elem_id="report")
            with gr.Tab("Chest X-ray", id="cxr"):
                gr.Markdown("## Chest X-ray: pleural effusion, explained\nUpload one chest X-ray (PNG, JPEG or DICOM). The model says "
                            "whether it shows a pleural effusion and why, in radiology descriptors (the concept bottleneck of "
                            "Yalavarthi and Ratha over BiomedCLIP), with a saliency map of the decision.")  # fmt: skip
                x_status = gr.Markdown(xray_status_text(cxr_models), elem_id="cxr_status")
                with gr.Row():
                    xray = gr.File(label="Chest X-ray", file_types=[".png", ".jpg", ".jpeg", ".dcm", ".dicom"], type="filepath", elem_id="xray")
                    x_preview = gr.Image(label="Your upload (DICOM windowed as the model reads it)", interactive=False, elem_id="cxr_preview")
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
                with gr.Row():
                    suggested = [gr.Button(visible=False, size="sm", elem_id=f"suggestion-{i}") for i in SUGGESTION_SLOTS]
                with gr.Row():
                    question = gr.Textbox(label="Question", placeholder="How sure is it?", elem_id="question", scale=5)
                    send = gr.Button("Send", variant="primary", elem_id="send", scale=1)
                question.submit(on_ask, [question, chatbot, last], [chatbot, question])
                send.click(on_ask, [question, chatbot, last], [chatbot, question])
                for b in suggested:
                    b.click(on_ask, [b, chatbot, last], [chatbot, question])
                last.change(on_result, [last], suggested)
            explore_tab(runners)

        model.change(on_model, [model], [methods, model_note])
        for name, control in knob_inputs:
            control.change(lambda v, st, n=name: {**(st or {}), n: v}, [control, knob_values], knob_values)
        for control in (methods, preset, knob_values, model2):
            control.change(lambda md, md2, m, p, kv: cost_both(runners, md, md2, m, p, knobs_from(kv)), [model, model2, methods, preset, knob_values],
                           cost)  # fmt: skip
        viewer_parts = [view_title, view_image, view_raw, view_bar, view_words, view_method]
        for img, note, faces, pick, side in ((img_a, note_a, faces_a, pick_a, "A"), (img_b, note_b, faces_b, pick_b, "B")):
            boxes = gr.State(None)
            img.change(lambda md, x, s=side: on_photo(md, x, s), [model, img], [note, faces, pick, boxes],
                       concurrency_limit=2, concurrency_id="detect")  # fmt: skip
            pick.input(on_pick, [img, pick, boxes], [faces])
        last.change(region_menu, [last], [region_pick])
        region_pick.change(on_region_pick, [last, region_pick], [regions])
        gallery_files.change(on_gallery, [gallery_files], [uploaded_gallery, gallery_note])
        last.change(on_second, [last], [grid2, compare_table])
        compare.click(on_compare, [model, img_a, img_b, methods, preset, scores, uploaded_gallery, pick_a, pick_b, knob_values, model2],
                      [verdict, bar, details, crop_a, crop_b, words, last, concepts, regions, grid, legend, *viewer_parts],
                      concurrency_limit=1, concurrency_id="model", api_name="compare")  # fmt: skip
        grid.select(on_cell, [last, opacity], viewer_parts)
        opacity.release(on_opacity, [last, opacity, view_method], viewer_parts)
        export.click(on_export, [last], [report_files], api_name="report")
        xray.change(xray_preview, [xray], [x_preview, x_status])
        diagnose.click(on_xray, [xray, sal_method], [x_verdict, x_words, x_chart, x_crop, x_map, x_caption, last],
                       concurrency_limit=1, concurrency_id="model", api_name="xray")  # fmt: skip
    return demo


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None) -> None:
    """Serve on 127.0.0.1 (``GRADIO_SERVER_NAME`` to change), no share link, uploads capped."""
    demo.queue(default_concurrency_limit=1).launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        share=False,
        max_file_size=MAX_UPLOAD,
    )
