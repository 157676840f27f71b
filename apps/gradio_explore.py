"""The Gradio page's Explore tab: the explorer and viewer of the X-Map platform for a user's
own data (handlers: ``apps.explore``; grid and viewer: ``apps.grid``, as the face tab)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from apps.gpu import GPU_SECONDS, spaces
from apps.gradio_parts import PHOTO_SUFFIXES, _viewer_updates, cancellable, on_cell, on_opacity
from apps.grid import gallery_columns, gallery_items, viewer
from apps.handlers import PRESETS, Runners, method_choices, model_choices, runner_capabilities, work_dir
from apps.uploads import server_paths_allowed
from core.batch.parquet import is_store


def explore_tab(runners: Runners) -> None:
    """The explorer and viewer of the X-Map platform for a user's own data: a pairs CSV (or
    a folder of identity sub-folders) through the batch path with progress, a table to sort
    and filter, and the maps of the row clicked (handlers: ``apps.explore``)."""
    from apps import explore
    from apps.explore_store import store_table

    def frame(table: dict[str, Any]) -> dict[str, Any]:
        return gr.update(value={"headers": table["headers"], "data": table["values"]})

    async def on_run(model, upload, methods, preset, per_label, folder=None, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        return await cancellable(run_now, model, upload, methods, preset, per_label, folder, progress)

    @spaces.GPU(duration=GPU_SECONDS)  # a batch may take minutes: ZeroGPU caps a call at its duration
    def run_now(model, upload, methods, preset, per_label, folder, progress):
        report = lambda f, msg: progress(f, desc=msg)  # noqa: E731
        folder = (folder or "").strip() if server_paths else ""
        if folder and not upload and is_store(folder):  # a results store (core batch --store parquet): opened, not run
            out = explore.open_explore(folder)
        elif folder and not upload:  # the operator allowed server paths (XFV_SERVER_PATHS=1): a local installation
            out = explore.run_explore(runners.get(model), folder, methods or [], preset, per_label or None, work_dir("explore"), report)
        else:
            out = explore.run_explore_uploads(runners.get(model), upload, methods or [], preset, per_label or None, work_dir("explore"), report)
        if not out["ok"]:
            return out["message"], gr.update(value=None), None
        # "shown": every line after the filters; "page": the page on screen (0-based), for the clicks
        state = {"out": out["out"], "rows": out["rows"], "methods": out["methods"], "shown": out["rows"], "page": out["page"],
                 "message": out["page_message"], "store": out.get("store")}  # fmt: skip
        return out["summary"], frame(out["table"]), state

    def on_ran(state):  # after a run: page 1 and what it shows
        return (gr.update(value=state["page"] + 1), state["message"]) if state else (gr.update(), gr.update())

    def on_filter(state, decision, correct, min_c, text, sort_by, descending):  # a filter or the sort changed: back to page 1
        return on_page(state, 1, decision, correct, min_c, text, sort_by, descending)[:3]

    def page_number(state):  # the page box after a filter changed
        return gr.update(value=state["page"] + 1) if state else gr.update()

    def on_page(state, number, decision, correct, min_c, text, sort_by, descending):
        """Page ``number`` (1-based, as the box shows it; clamped by the handler) of the filtered table."""
        if not state:
            return gr.update(), state, "", gr.update()
        page = int(number) - 1 if number is not None else 0
        if state.get("store"):  # each page one DuckDB query over the store: nothing else is loaded
            dec, cor = explore.DECISION_CHOICES.get(decision, decision), explore.CORRECT_CHOICES.get(correct, correct)
            out = store_table(state["store"], dec, cor, min_c, text, sort_by, descending, page)
        else:
            out = explore.explore_table(state["rows"], state["methods"], decision, correct, min_c, text, sort_by, descending, page)
        if not out["ok"]:
            return gr.update(), state, out["message"], gr.update()
        state = {**state, "shown": out["rows"], "page": out["page"], "message": out["message"]}
        return frame(out["table"]), state, out["message"], gr.update(value=out["page"] + 1)

    def on_previous(state, number, *filters):
        return on_page(state, (number or 1) - 1, *filters)

    def on_next(state, number, *filters):
        return on_page(state, (number or 1) + 1, *filters)

    def on_select(state, evt: gr.SelectData):
        if not state:
            return "Run a batch first.", gr.update(value=None, visible=False), None, *_viewer_updates(None)
        row = evt.row_value or []  # the line's own "#" cell first: right whatever page or sort the table shows
        index = int(row[0]) if row and str(row[0]).lstrip("-").isdigit() else \
            explore.selected_index(state["shown"], evt.index, state.get("page", 0))  # fmt: skip
        view = explore.explore_view(state["out"], index)
        if not view["ok"]:
            return view["message"], gr.update(value=None, visible=False), None, *_viewer_updates(None)
        res = view["result"]  # the saved pair, rebuilt exactly: the same grid and viewer as the face tab
        cells = gallery_items(res)
        first = next((p["method"] for p in view["panels"] if p["image"] is not None), None)
        grid = gr.update(value=cells or None, columns=gallery_columns(res), visible=bool(cells), selected_index=None)
        return view["message"] + ("\n\n" + view["words"] if view["words"] else ""), grid, {"kind": "faces", "result": res}, \
            *_viewer_updates(viewer(res, first) if first else None)  # fmt: skip

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
            folder = gr.Textbox(label="...or a CSV, a folder or a results store (opened, not run) on this server",
                                placeholder="../shared/data/faces/deepface/pairs.csv") \
                if server_paths else None  # fmt: skip
        with gr.Row():
            model = gr.Dropdown(model_choices(), value=runners.default, label="Face model")
            methods = gr.CheckboxGroup(method_choices(runner_capabilities(runners.get())), value=["xmap3"], label="Explanation methods")
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
        table = gr.Dataframe(label=f"Pairs, {explore.PAGE_SIZE} a page (click a row to see its maps)", interactive=False,
                             elem_id="explore_table")  # fmt: skip
        with gr.Row(equal_height=True):
            previous = gr.Button("Previous", size="sm", scale=0, min_width=100, elem_id="explore_previous")
            page_no = gr.Number(value=1, precision=0, label="Page", scale=0, min_width=100, elem_id="explore_page")
            following = gr.Button("Next", size="sm", scale=0, min_width=100, elem_id="explore_next")
            shown = gr.Markdown(elem_id="explore_shown")
        state = gr.State(None)
        view_msg = gr.Markdown(elem_id="explore_verdict")
        picked = gr.State(None)
        view_maps = gr.Gallery(label="Maps of the pair: face A (top row), face B (bottom row); click one to see it large", columns=2,
                               object_fit="contain", allow_preview=False, height=2 * 300 + 40, visible=False, elem_id="explore_maps")  # fmt: skip
        with gr.Column(elem_id="explore_viewer"):
            x_title = gr.Markdown()
            x_opacity = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Map over photo (0: the photo, 1: the map)")
            x_image = gr.Image(label="Face A | face B", interactive=False, elem_id="explore_viewer_image")
            with gr.Row():
                x_raw = gr.Image(label="The raw maps (one scale for both faces)", interactive=False)
                x_bar = gr.Image(show_label=False, interactive=False, height=60, buttons=[])
            x_words = gr.Markdown()
            x_method = gr.State(None)
        parts = [x_title, x_image, x_raw, x_bar, x_words, x_method]
        inputs = [model, upload, methods, preset, per_label] + ([folder] if folder is not None else [])
        run.click(on_run, inputs, [summary, table, state], concurrency_limit=1, concurrency_id="model").then(on_ran, [state], [page_no, shown])
        filters = [state, decision, correct, min_c, text, sort_by, descending]
        one = {"concurrency_limit": 1, "concurrency_id": "explore_page"}  # in the order given: Next right after a typed page
        for control in filters[1:]:
            control.change(on_filter, filters, [table, state, shown], **one).then(page_number, [state], [page_no])
        paging, paged = [state, page_no, *filters[1:]], [table, state, shown, page_no]
        previous.click(on_previous, paging, paged, **one)
        following.click(on_next, paging, paged, **one)
        for typed in (page_no.submit, page_no.blur):  # not .change: the handlers set the box themselves
            typed(on_page, paging, paged, **one)
        table.select(on_select, [state], [view_msg, view_maps, picked, *parts])
        view_maps.select(on_cell, [picked, x_opacity], parts)
        x_opacity.release(on_opacity, [picked, x_opacity, x_method], parts)
