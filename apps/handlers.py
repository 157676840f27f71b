"""What both apps show, as plain data: every handler calls ``core`` and returns numbers,
images and words; the Gradio (``apps.gradio_app``) and Streamlit (``apps.streamlit_app``)
pages only lay them out. Errors come back as messages, never as raises, so a page always
has something to show; a method that fails shows its error in its own panel.
"""

from __future__ import annotations

import atexit
import html
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from apps.chat import ask, chat_scope, chat_suggestions, default_chat  # noqa: F401 (re-exported: the apps import them from here)
from apps.xray import CXR_SALIENCY, CXRModels, diagnose_xray  # noqa: F401 (re-exported)
from core import Runner, XFVError, confidence_words, verdict_sentence
from core.errors import DataError, ModelUnavailableError
from core.registry import DEFAULT_MODEL, describe_models, explainer_names, explainer_spec
from core.render import render_map, side_by_side

log = logging.getLogger(__name__)

TITLE = "Explainable face verification"
INTRO = (
    "Upload two face photos. The app finds the largest face in each, aligns it, compares "
    "the two with the selected model and says how sure it is (the C-Score of Knoche et al.: "
    "the probability, learnt from labelled pairs, that the decision is right)."
)


#: Most bytes a face photo may have, in both apps (said next to the upload). The Gradio server
#: takes files up to ``apps.gradio_app.MAX_UPLOAD`` so that this is said inline, not in a toast.
MAX_PHOTO_BYTES = 20_000_000


# -- temporary files: one folder per process, removed at exit ------------------------------
_TEMP: dict[str, Path] = {}
_TEMP_LOCK = threading.Lock()


def temp_root() -> Path:
    """This process's folder for uploads, reports and batch results (``XFV_TEMP`` or a new
    temporary folder), removed when the process exits."""
    with _TEMP_LOCK:
        if "root" not in _TEMP:
            base = os.environ.get("XFV_TEMP")
            root = Path(tempfile.mkdtemp(prefix="xfv-app-", dir=base))
            _TEMP["root"] = root
            atexit.register(shutil.rmtree, root, True)
        return _TEMP["root"]


def work_dir(kind: str) -> Path:
    """A new folder under ``temp_root()`` for one report or batch."""
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=temp_root()))


# -- models --------------------------------------------------------------------------------
def model_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered face model; those whose weights must be downloaded
    say so (they run only where the weights are in the local cache)."""
    rows = describe_models()
    rows.sort(key=lambda r: (r["name"] != DEFAULT_MODEL, not r["offline"], r["name"]))
    return [(r["label"] if r["offline"] or "download" in r["label"].lower() else f"{r['label']} (download)", r["name"]) for r in rows]


class Runners:
    """One ``Runner`` per model name, made on first use and kept (models load once)."""

    def __init__(self, first: Runner | None = None, device: str = "auto") -> None:
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self.device = device
        if first is not None:
            self._runners[first.model_name] = first
        self.default = first.model_name if first is not None else DEFAULT_MODEL

    def get(self, model: str | None = None) -> Runner:
        name = model or self.default
        with self._lock:
            if name not in self._runners:
                self._runners[name] = Runner(model=name, device=self.device)
            return self._runners[name]


# -- example pairs ---------------------------------------------------------------------------
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def example_pairs(folder: str | Path | None, limit: int = 24) -> list[list[str]]:
    """Example pairs from a pairs CSV (``file_x,file_y,same``), or a folder: its
    ``pairs.csv`` when there is one, else its photos two by two in name order. Labelled
    pairs alternate genuine and impostor. None or a missing folder: no examples."""
    if not folder:
        return []
    given = Path(folder)
    root = given.parent if given.is_file() else given
    if not root.is_dir():
        log.warning("examples folder %s not found; no examples shown", root)
        return []
    csv_path = given if given.is_file() else root / "pairs.csv"
    if csv_path.is_file():
        from core.data import read_pairs, resolve

        try:
            pairs = read_pairs(csv_path)
        except DataError as e:
            log.warning("examples: %s", e)
            return []
        same, other = [p for p in pairs if p.same], [p for p in pairs if not p.same]
        mixed = [p for pair in zip(same, other, strict=False) for p in pair] + same[len(other) :] + other[len(same) :]
        out = [[str(resolve(root, p.file_x, csv_path)), str(resolve(root, p.file_y, csv_path))] for p in mixed]
        return [p for p in out if all(Path(f).is_file() for f in p)][:limit]
    photos = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [photos[i : i + 2] for i in range(0, len(photos) - 1, 2)][:limit]


def confidence_bar(c_score: float | None, same: bool) -> str:
    """An HTML bar for a C-Score in [0.5, 1] (the UI shows numbers it is given, nothing more)."""
    if c_score is None:
        return "<p>No C-Score: this model has no calibration file.</p>"
    pct = 100.0 * min(1.0, max(0.0, (c_score - 0.5) / 0.5))  # the C-Score lies in [0.5, 1]: the bar spans that
    return (
        '<div style="font-family:sans-serif">'
        f"<div>C-Score <b>{c_score:.3f}</b> ({html.escape(confidence_words(c_score))}) that the decision "
        f"(<i>{'same person' if same else 'different people'}</i>) is right</div>"
        '<div style="background:#e3e3e3;border-radius:4px;height:14px;width:100%;max-width:420px">'
        f'<div style="background:#4a6fa5;height:14px;border-radius:4px;width:{pct:.1f}%"></div></div>'
        '<div style="font-size:12px;color:#555;max-width:420px;display:flex;justify-content:space-between">'
        "<span>0.5: a coin toss</span><span>1: certain</span></div></div>"
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
    from core.report import write_report

    if result is None:
        raise ValueError("compare two photos first")
    out = Path(folder or work_dir("report"))
    return [str(p) for p in write_report(result, out / "face_comparison", faithfulness or {})]


def cost_text(runner: Runner, methods: list[str] | None, preset: str, knobs: dict[str, Any] | None = None) -> str:
    """What the chosen methods cost before anything runs (with the advanced settings' ``knobs``)."""
    if not methods:
        return "No explanation method chosen: only the decision and the C-Score are computed."
    try:
        cost = runner.forward_passes(methods, **{**(knobs or {}), "preset": preset})
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
        from apps.grid import faithfulness_badge

        text += f" (random map {random['deletion_auc']:+.3f}; lower is more faithful: {faithfulness_badge(scores, random)})"
    return text


#: What each number on the page means, in one line (units, and which way is better).
NUMBER_WORDS = {
    "similarity": "cosine similarity of the two faces' embeddings, -1 to 1; at or above the threshold the model says 'same person'",
    "threshold": "the similarity at which the model's decision switches, learnt from labelled pairs (10-fold cross-validation)",
    "C-Score": "the probability, learnt from labelled pairs, that this decision is right: 0.5 is a coin toss, 1 is certain",
    "deletion score": "area under the decision margin (similarity minus threshold) as 0-100 % of the pixels the map ranks "
                      "first are hidden; lower means the map found what the decision rests on; compared with a random map",
    "forward passes": "images the model embedded for this map; 'from the cache' when another method computed them",
}  # fmt: skip


def numbers_markdown() -> str:
    """``NUMBER_WORDS`` as a Markdown list, for the page's "what the numbers mean"."""
    return "\n".join(f"- **{k}**: {v}" for k, v in NUMBER_WORDS.items())


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


def faces_in_photo(runner: Runner, image: np.ndarray | None, side: str, chosen: int = 0) -> dict[str, Any]:
    """The faces found in photo ``side`` right after its upload, for choosing one when there
    are several: ``n`` (0 when none), ``picture`` (the photo with every face's box numbered
    1, 2, ... largest first, the ``chosen`` one highlighted; None for one face), ``boxes``, ``choices``
    ((label, index) pairs) and ``message`` (what to do, or "")."""
    from core.errors import NoFaceError
    from core.render import draw_faces

    if image is None:
        return {"ok": True, "n": 0, "picture": None, "choices": [], "message": ""}
    try:
        _, det = runner.find_faces(image, f"photo {side}")
    except NoFaceError as e:
        return {"ok": False, "n": 0, "picture": None, "choices": [], "message": f"**Photo {side}:** {e}."}
    except XFVError as e:
        return {"ok": False, "n": 0, "picture": None, "choices": [], "message": f"**Photo {side} cannot be used:** {e}."}
    n = det.n_faces
    if n <= 1:
        return {"ok": True, "n": n, "picture": None, "choices": [], "message": ""}
    choices = [(f"face {i + 1}" + (" (largest)" if i == 0 else ""), i) for i in range(n)]
    boxes = [f.box for f in det.faces]
    return {"ok": True, "n": n, "choices": choices, "picture": draw_faces(image, boxes, chosen), "boxes": boxes,
            "message": f"**Photo {side} holds {n} faces**, numbered on the picture (1 is the largest). Choose the one to compare."}  # fmt: skip


def compare_faces(runner: Runner, image_a: np.ndarray | None, image_b: np.ndarray | None, methods: list[str] | None = None,
                  preset: str = "fast", progress: Any = None, deletion_scores: bool = True,
                  gallery: str | None = None, faces: tuple[int | None, int | None] | None = None,
                  knobs: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything the page shows for one pair. Errors come back as a message, not a raise;
    a method that fails shows its error in its own panel while the others still show.
    ``deletion_scores`` adds each map's deletion score on this pair (and a random map's);
    ``gallery`` (a folder or identities CSV) is what SDD compares against; ``faces``: which
    face of each photo (``faces_in_photo``'s indices; None: the largest); ``knobs``: the
    explainers' settings (``apps.knob_controls.knobs_from``), over the preset's."""
    if image_a is None or image_b is None:
        return {"ok": False, "message": "Upload two photos, one on each side (at most 20 MB each; the browser refuses a file over "
                                        "100 MB before sending it)."}  # fmt: skip
    knobs = {**(knobs or {}), "preset": preset}
    if gallery:
        knobs["gallery"] = gallery
    try:
        res = runner.explain(image_a, image_b, methods=methods or (), progress=progress, names=("photo A", "photo B"), faces=faces, **knobs)
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
    return pair_output(res, faith, image_a, image_b)


def pair_output(res: Any, faith: dict[str, Any], image_a: Any, image_b: Any) -> dict[str, Any]:
    """What the page shows for one model's ``PairResult`` (``compare_faces``'s answer): also
    each model's part of a comparison of two models (``apps.model_compare``)."""
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
        "charts": concept_charts(res),
        "regions": region_rows(res),
        "faithfulness": faith,
        "message": ("**" + verdict + "**")
        + ("".join(f"\n\n_Note: {n}_" for n in res.notes))
        + (
            "\n\n_Note: photo A and photo B are the same picture, so the similarity is 1 by construction; compare two different photos._"
            if _same_picture(image_a, image_b)
            else ""
        ),
        "bar": confidence_bar(res.c_score, res.same),
        "details": details,
        "crop_a": res.pair.a.image,
        "crop_b": res.pair.b.image,
        "panels": panels,
        "gallery": [(p["image"], p["caption"]) for p in panels if p["image"] is not None],
        "words": "\n\n".join(words),
    }


def _same_picture(a: Any, b: Any) -> bool:
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)


# -- tables and charts -----------------------------------------------------------------------
REGION_HEADERS = ["method", "face", "region", "similar %", "dissimilar %", "area %", "similar x area"]


def region_rows(res: Any, top: int | None = None) -> list[list[Any]]:
    """The region table of every map (``Runner`` fills ``extras['regions']``), one row per
    method, face and region, strongest evidence first: the rows of ``REGION_HEADERS``."""
    out: list[list[Any]] = []
    for e in res.explanations:
        tables = e.extras.get("regions") if e.ok else None
        if not tables:
            continue
        shared = len(e.maps) == 2 and np.array_equal(e.maps[0], e.maps[1])
        for i, rows in enumerate(tables):
            if rows is None or (shared and i == 1):
                continue
            face = "both" if shared else "AB"[i]
            ranked = sorted(rows, key=lambda r: -(r["similar"] + r["dissimilar"]))[:top]
            out += [[e.label, face, r["label"], round(100 * r["similar"], 1), round(100 * r["dissimilar"], 1), round(100 * r["area"], 1),
                     round(float(r.get("density", 0.0)), 1)] for r in ranked]  # fmt: skip
    return out


def figure(chart: dict[str, Any] | None) -> Any:
    """A plotly figure from the plain figure dict the explainers return (None stays None)."""
    if not chart:
        return None
    import plotly.io as pio

    return pio.from_json(json.dumps(chart))


def concept_charts(res: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, plotly figure dict) of every explanation that carries a chart (``concepts``)."""
    return [(e.label, e.extras["chart"]) for e in res.explanations if e.ok and isinstance(e.extras.get("chart"), dict)]
