"""The Streamlit app (``make streamlit``): the face-verification tab, the chest X-ray tab and
questions about the last result, over the same ``core`` calls as the Gradio app.

Layout and wiring only: every computation is a handler of ``apps.handlers`` (shared with
``apps.gradio_app`` and tested without a browser); this page lays out what they return.
Models load once per process through ``st.cache_resource``; the last results live in
``st.session_state`` so they stay on the page across reruns. ``.streamlit/config.toml``
turns analytics off, binds the server to 127.0.0.1 and caps uploads at 20 MB.

Environment: ``XFV_EXAMPLES`` (a folder of example pairs), ``XFV_GALLERY`` (what SDD compares
against), ``XFV_CXR_CLIP`` and ``XFV_CXR_HEAD`` (the chest X-ray model), as for ``app.py``.
Tested with ``streamlit.testing.v1.AppTest`` (``tests/apps/test_streamlit_app.py``); the
widget keys below (``model``, ``photo_a``, ``photo_b``, ``methods``, ``compare``, ...) are
what the tests drive.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as app.py: weights from the local caches only, unless HF_HUB_OFFLINE=0
# `streamlit run apps/streamlit_app.py` puts apps/ on sys.path, not the repository root
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from apps.explore import explore_view, run_explore_uploads  # noqa: E402
from apps.grid import CELL, cell_method, grid_columns, grid_items, legend_html, viewer  # noqa: E402
from apps.handlers import (  # noqa: E402
    CXR_SALIENCY,
    INTRO,
    MAX_PHOTO_BYTES,
    PRESETS,
    REGION_HEADERS,
    TITLE,
    CXRModels,
    Runners,
    ask,
    diagnose_xray,
    example_pairs,
    export_report,
    faces_in_photo,
    figure,
    method_choices,
    model_choices,
    runner_capabilities,
    work_dir,
)
from apps.model_compare import NONE, compare_pair, cost_both, export_comparison  # noqa: E402
from core.device import tune_cpu_allocator  # noqa: E402
from core.errors import XFVError  # noqa: E402
from core.inputs import load_upload  # noqa: E402
from core.io import load_image  # noqa: E402
from core.registry import explainer_spec  # noqa: E402
from core.render import draw_faces  # noqa: E402

PHOTO_TYPES = ["jpg", "jpeg", "png", "bmp", "webp"]
XRAY_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom"]
REPORT_MIME = {".html": "text/html", ".json": "application/json"}


# -- models: loaded once per process -------------------------------------------------------
@st.cache_resource(show_spinner="Loading the face models...")
def face_runners() -> Runners:
    """One ``Runner`` per face model, made on first use (``apps.handlers.Runners``)."""
    return Runners()


@st.cache_resource(show_spinner=False)
def cxr_models(clip: str | None, head: str | None) -> CXRModels:
    """The chest X-ray model for this ``XFV_CXR_CLIP`` / ``XFV_CXR_HEAD``; built on first use."""
    return CXRModels(clip=clip, head=head)


@st.cache_data(show_spinner=False)
def examples(folder: str | None) -> list[list[str]]:
    """The example pairs of ``XFV_EXAMPLES`` (none when unset)."""
    return example_pairs(folder)


# -- inputs ----------------------------------------------------------------------------------
def read_photo(file: Any) -> np.ndarray | None:
    """An uploaded or camera photo through ``core.inputs.load_upload`` (size limits, EXIF,
    modes; the report names the file and its SHA-256); a file that is not an image says so
    with ``st.error`` and gives None."""
    if file is None:
        return None
    try:
        return load_upload(file.getvalue(), file.name, MAX_PHOTO_BYTES)
    except XFVError as e:
        st.error(f"{file.name}: {e}")
        return None


def face_choice(runner: Any, image: np.ndarray, side: str) -> int | None:
    """When the photo holds several faces: the picture with their boxes numbered and a choice
    of face (``apps.handlers.faces_in_photo``, kept per photo across reruns); else None."""
    source = getattr(image, "source", None)  # an upload's SHA-256, else a digest of a subsample (an example photo)
    key = (side, source["sha256"] if source else hashlib.sha1(np.ascontiguousarray(image[::7, ::7]).tobytes()).hexdigest(), image.shape)
    found = st.session_state.setdefault("faces_found", {}).get(key)
    if found is None:
        found = faces_in_photo(runner, image, side.upper())
        st.session_state["faces_found"][key] = found
    if found["message"]:
        (st.markdown if found["ok"] else st.warning)(found["message"])
    if found["n"] <= 1:
        return None
    chosen = st.radio(f"Face to compare in photo {side.upper()}", [i for _, i in found["choices"]], horizontal=True, key=f"face_{side}",
                      format_func=dict((i, label) for label, i in found["choices"]).__getitem__)  # fmt: skip
    st.image(draw_faces(image, found["boxes"], int(chosen or 0)), width=320)
    return int(chosen or 0)


def photo_input(side: str, title: str, example: str | None) -> np.ndarray | None:
    """One side's photo: an upload or a camera shot, else the chosen example's photo."""
    st.markdown(f"**{title}**")
    source = st.radio("Source", ["upload", "camera"], horizontal=True, key=f"source_{side}", label_visibility="collapsed",
                      format_func=lambda s: "Upload a photo" if s == "upload" else "Take a photo")  # fmt: skip
    if source == "camera":
        file = st.camera_input(title, key=f"camera_{side}", label_visibility="collapsed")
    else:
        file = st.file_uploader(title, type=PHOTO_TYPES, key=f"photo_{side}", label_visibility="collapsed")
    image = read_photo(file)
    if image is None and file is None and example:
        try:
            image = load_image(example)
        except XFVError as e:
            st.error(f"{Path(example).name}: {e}")
    if image is not None:
        st.image(image, width=220)
    return image


# -- the face tab ------------------------------------------------------------------------------
def face_tab() -> None:
    runners = face_runners()
    labels = {name: label for label, name in model_choices()}
    model = st.selectbox("Face model (offline default first; others need their weights)", list(labels), format_func=labels.__getitem__, key="model")
    second = st.selectbox("Compare with a second model", [NONE, *labels], format_func=lambda m: labels.get(m, m), key="model2")
    runner = runners.get(model)
    caps = runner_capabilities(runner)
    if caps is None:
        st.caption("_The weights of this model are not here: every method is listed, and running says what to download._")

    pairs = examples(os.environ.get("XFV_EXAMPLES") or None)
    pair: list[str] = []
    if pairs:
        pick = st.selectbox("Example pair (an upload replaces its side)", list(range(len(pairs))), index=None, key="example",
                            format_func=lambda i: " / ".join(Path(p).name for p in pairs[i]), placeholder="none")  # fmt: skip
        pair = pairs[pick] if pick is not None else []
    col_a, col_b = st.columns(2)
    with col_a:
        image_a = photo_input("a", "Photo A (probe)", pair[0] if pair else None)
        face_a = face_choice(runner, image_a, "a") if image_a is not None else None
    with col_b:
        image_b = photo_input("b", "Photo B (reference)", pair[1] if pair else None)
        face_b = face_choice(runner, image_b, "b") if image_b is not None else None

    choices = {key: label for label, key in method_choices(caps)}
    col_m, col_p = st.columns([2, 1])
    with col_m:
        default = [k for k in ("xmap3",) if k in choices]
        methods = st.multiselect("Explanation methods", list(choices), default=default, format_func=choices.__getitem__, key="methods")
    with col_p:
        preset = st.radio("Preset", list(PRESETS), format_func=PRESETS.__getitem__, key="preset")
        scores = st.toggle("Deletion score of each map on this pair (against a random map)", value=True, key="deletion")
    st.markdown(cost_both(runners, model, second, methods, preset))

    if st.button("Compare", type="primary", key="compare"):
        bar = st.progress(0.0, text="starting")

        def progress(frac: float, message: str) -> None:
            bar.progress(min(1.0, max(0.0, float(frac))), text=message)

        out = compare_pair(runners, model, second, image_a, image_b, methods, preset, progress=progress, deletion_scores=scores,
                           gallery=os.environ.get("XFV_GALLERY") or None, faces=(face_a, face_b))  # fmt: skip
        bar.empty()
        st.session_state["faces"] = out
        st.session_state.pop("report", None)
        if out["ok"]:
            st.session_state["last"] = {"kind": "faces", "result": out["result"], "faithfulness": out["faithfulness"],
                                        "comparison": out.get("comparison")}  # fmt: skip
    if "faces" in st.session_state:
        face_results(st.session_state["faces"])


def face_results(out: dict[str, Any]) -> None:
    """The verdict, C-Score, crops, one panel per method, the region table, the concepts
    chart, the details and the report's download buttons of the last comparison."""
    if not out["ok"]:
        st.error(out["message"])
        if out.get("words"):
            st.markdown(out["words"])
        return
    st.markdown(out["message"])
    st.html(out["bar"])
    col_a, col_b = st.columns(2)
    col_a.image(out["crop_a"], caption="Aligned face A", width=160)
    col_b.image(out["crop_b"], caption="Aligned face B", width=160)
    method_grid(out["result"], out["faithfulness"], key="faces")
    if out.get("second"):  # two models: the second one's grid, then how the maps agree
        st.markdown(f"**Second model, {out['comparison'].models[1]}**")
        method_grid(out["second"]["result"], out["second"]["faithfulness"], key="faces2")
        st.markdown(out["table"])
    for p in out["panels"]:  # what the grid cannot show: failures and explanations in words
        if p["error"]:
            st.error(f"**{p['label']}**: {p['error']}")
        elif p["image"] is None:
            st.markdown(f"**{p['label']}**" + "".join(f"\n- {t}" for t in p["text"]))
    if out["regions"]:
        st.markdown("**Facial regions of each map**")
        st.dataframe([dict(zip(REGION_HEADERS, row, strict=True)) for row in out["regions"]], hide_index=True, key="regions")
    for i, (label, chart) in enumerate(out["charts"]):
        st.plotly_chart(figure(chart), key=f"chart-{i}", alt=label)
    with st.expander("Details (model, weights hash, threshold, parameters, timings, scores)"):
        st.json(out["details"], expanded=False)
    if st.button("Audit report (HTML + JSON)", key="export"):
        cmp = out.get("comparison")
        st.session_state["report"] = export_comparison(cmp) if cmp is not None else export_report(out["result"], out["faithfulness"])
    for path in st.session_state.get("report", []):
        file = Path(path)
        st.download_button(f"Download {file.name}", file.read_bytes(), file_name=file.name, mime=REPORT_MIME.get(file.suffix),
                           key=f"download-{file.suffix[1:]}", on_click="ignore")  # fmt: skip


def method_grid(res: Any, faithfulness: dict[str, Any] | None, key: str) -> None:
    """The grid (one column per method with maps, a row per face), the legend and the
    viewer of the method picked, from ``apps.grid`` as in the Gradio page."""
    cells = grid_items(res, faithfulness)
    n = grid_columns(res)
    if not cells:
        return
    shown = [m for i in range(n) if (m := cell_method(res, i))]
    st.html(legend_html(shown))
    with st.container(key=f"{key}-grid"):
        for row in range(2):
            for col, (image, caption) in zip(st.columns(n), cells[row * n : (row + 1) * n], strict=True):
                col.image(image, caption=caption, width=CELL)
    labels = {m: explainer_spec(m).label for m in shown}
    method = st.selectbox("Look closer at", shown, format_func=labels.__getitem__, key=f"{key}-viewer-method")
    opacity = st.slider("Map over photo (0: the photo, 1: the map)", 0.0, 1.0, 0.7, 0.05, key=f"{key}-opacity")
    view = viewer(res, method, opacity)
    if view["ok"]:
        with st.container(key=f"{key}-viewer"):
            st.markdown(view["title"])
            st.image(view["image"], caption="Face A | face B")
            st.image(view["raw"], caption="The raw maps (one scale for both faces)")
            st.image(view["bar"], caption="Colour bar, in the map's units")
            st.markdown(view["words"])


# -- the explore tab --------------------------------------------------------------------------
def explore_tab(runner: Any) -> None:
    st.markdown("Upload a pairs CSV (`file_x,file_y[,same]`, or `file,identity`) with its photos, or one `.zip` of them. Names in "
                "the CSV are relative to it and must be in the upload.")  # fmt: skip
    files = st.file_uploader("Pairs CSV and photos, or a .zip", type=["csv", "zip", *PHOTO_TYPES], accept_multiple_files=True, key="explore_upload")
    caps = runner_capabilities(runner)
    choices = {key: label for label, key in method_choices(caps)}
    methods = st.multiselect("Explanation methods", list(choices), default=["xmap3"], format_func=choices.__getitem__, key="explore_methods")
    per_label = st.number_input("Pairs per label (0: all)", 0, 10_000, 5, key="explore_per_label")
    if st.button("Run the batch", type="primary", key="explore_run"):
        folder = work_dir("streamlit-upload")
        paths = []
        for f in files or []:
            path = folder / Path(f.name).name  # the uploaded file's own name, no folders
            path.write_bytes(f.getvalue())
            paths.append(str(path))
        bar = st.progress(0.0, text="starting")
        out = run_explore_uploads(runner, paths, methods, "fast", per_label or None, progress=lambda f, m: bar.progress(min(1.0, f), text=m))
        bar.empty()
        st.session_state["explore"] = out
        st.session_state["explore_page"] = 1  # a new batch starts on its first page
    out = st.session_state.get("explore")
    if not out:
        return
    if not out["ok"]:
        st.error(out["message"])
        return
    from apps.explore import explore_table  # the page of the table (apps.explore), clamped to the pages there are

    st.markdown(out["summary"])
    page = int(st.session_state.get("explore_page") or 1) - 1
    if out.get("store"):  # a results store (apps.explore_store): each page one DuckDB query
        from apps.explore_store import store_table

        paged = store_table(out["store"], page=page)
    else:
        paged = explore_table(out["rows"], out["methods"], page=page)
    st.session_state["explore_page"] = paged["page"] + 1  # before the box is drawn: a page past the end shows the last
    table = paged["table"]
    st.dataframe([dict(zip(table["headers"], row, strict=True)) for row in table["values"]], hide_index=True, key="explore_table")
    st.number_input("Page", min_value=1, step=1, key="explore_page")
    st.caption(paged["message"])
    index = st.selectbox("Open pair (of this page)", table["indices"], key="explore_pick")
    view = explore_view(out["out"], index)
    if view["ok"]:
        st.markdown(view["message"])
        method_grid(view["result"], None, key="explore")
    else:
        st.warning(view["message"])


# -- the chest X-ray tab ---------------------------------------------------------------------
def xray_tab() -> None:
    st.markdown("Pleural effusion on one chest X-ray (PNG, JPEG or DICOM), explained by radiology descriptors "
                "(the concept bottleneck of Yalavarthi and Ratha over BiomedCLIP).")  # fmt: skip
    file = st.file_uploader("Chest X-ray", type=XRAY_TYPES, key="xray")
    method = st.radio("Saliency map", list(CXR_SALIENCY), format_func=CXR_SALIENCY.__getitem__, horizontal=True, key="saliency")
    if st.button("Diagnose", type="primary", key="diagnose"):
        path = None
        if file is not None:  # diagnose reads a path: the upload goes to this process's temporary folder
            suffix = Path(file.name).suffix.lower()
            path = work_dir("xray") / f"xray{suffix if suffix[1:] in XRAY_TYPES else ''}"
            path.write_bytes(file.getvalue())
        models = cxr_models(os.environ.get("XFV_CXR_CLIP") or None, os.environ.get("XFV_CXR_HEAD") or None)
        with st.spinner("Diagnosing..."):
            out = diagnose_xray(models, path, method)
        st.session_state["xray_out"] = out
        if out["ok"]:
            st.session_state["last"] = {"kind": "cxr", "result": out["result"]}
    if "xray_out" in st.session_state:
        xray_results(st.session_state["xray_out"])


def xray_results(out: dict[str, Any]) -> None:
    if not out["ok"]:
        st.warning(out["message"])
        return
    st.markdown(out["message"])
    if out["words"]:
        st.markdown(out["words"])
    if out["chart"]:
        st.plotly_chart(figure(out["chart"]), key="cxr-chart")
    col_img, col_map = st.columns(2)
    col_img.image(out["image"], caption="What the model saw", width=320)
    if out["saliency"] is not None:
        col_map.image(out["saliency"], caption="Saliency", width=320)
    if out["saliency_caption"]:
        st.caption(out["saliency_caption"])


# -- questions ---------------------------------------------------------------------------------
def chat_tab() -> None:
    st.markdown("Questions about the last comparison or X-ray (e.g. _Which region made them look alike?_, "
                "_How sure is it?_, _Why not a match?_). Answers come only from the computed results.")  # fmt: skip
    history: list[dict[str, str]] = st.session_state.setdefault("chat", [])
    question = st.chat_input("How sure is it?", key="question")
    if question:
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": ask(None, st.session_state.get("last"), question)}]
    for message in history:
        with st.chat_message(message["role"]):
            st.markdown(message["content"])


def main() -> None:
    tune_cpu_allocator()  # once per process: large forward buffers stay in the heap (core.device)
    st.set_page_config(page_title=TITLE, layout="wide")
    st.title(TITLE)
    st.markdown(INTRO)
    faces, xray, chat, explore = st.tabs(["Face verification", "Chest X-ray", "Ask about the result", "Explore"])
    with faces:
        face_tab()
    with xray:
        xray_tab()
    with chat:
        chat_tab()
    with explore:
        explore_tab(face_runners().get(st.session_state.get("model")))


main()
