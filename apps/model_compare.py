"""Two face models side by side on the face tab, as plain data: the pair is explained by both
models (``core.comparison.compare_models``), the page shows both decisions and C-Scores, the
second model's maps in a grid of their own, and a table of how each method's maps agree
(rank correlation per face, the regions each model relies on, each map's deletion score on
its own model next to a random map's, and the sentence ``core.comparison`` writes).

No maths here and no Gradio import: the numbers come from ``core``; ``apps.gradio_app`` lays
them out, and tests call these functions directly.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from apps.grid import gallery_items
from apps.handlers import Runners, _same_picture, compare_faces, confidence_bar, model_choices, pair_output, work_dir
from core import Runner, XFVError, verdict_sentence
from core.comparison import ModelComparison, compare_models
from core.errors import ModelUnavailableError

#: The second model chooser's first choice: one model, the page as it always was.
NONE = "none"

#: The comparison table's columns (``comparison_rows``), for two models ``m1`` and ``m2``.
HEADERS = ("method", "rank correlation, face A", "rank correlation, face B", "regions {m1} relies on", "regions {m2} relies on",
           "deletion score on {m1} (random map)", "deletion score on {m2} (random map)")  # fmt: skip


def second_model_choices() -> list[tuple[str, str]]:
    """The second model chooser: "none" first, then the face models (``model_choices``)."""
    return [(NONE, NONE), *model_choices()]


def wants_second(model2: str | None) -> bool:
    return bool(model2) and model2 != NONE


def _cannot_run(runner: Runner) -> str | None:
    """Why ``runner``'s model cannot run here (its weights are missing), or None."""
    from core.runner import model_capabilities

    try:
        model_capabilities(runner.embedder)
    except ModelUnavailableError as e:
        return str(e)
    return None


def compare_pair(runners: Runners, model: str | None, model2: str | None, image_a: Any, image_b: Any, methods: list[str] | None = None,
                 preset: str = "fast", progress: Any = None, deletion_scores: bool = True, gallery: str | None = None,
                 faces: tuple[int | None, int | None] | None = None, knobs: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The face tab's Compare: ``apps.handlers.compare_faces`` with ``model`` when ``model2``
    is "none" (or empty), else ``compare_two`` with both models (``runners`` makes and keeps them)."""
    kw: dict[str, Any] = {"progress": progress, "deletion_scores": deletion_scores, "gallery": gallery, "faces": faces, "knobs": knobs}
    if not wants_second(model2):
        return compare_faces(runners.get(model), image_a, image_b, methods, preset, **kw)
    return compare_two(runners.get(model), runners.get(model2), image_a, image_b, methods, preset, **kw)


def compare_two(first: Runner, second: Runner, image_a: Any, image_b: Any, methods: list[str] | None = None, preset: str = "fast",
                progress: Any = None, deletion_scores: bool = True, gallery: str | None = None,
                faces: tuple[int | None, int | None] | None = None, knobs: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything ``compare_faces`` gives for the ``first`` model (what the page's single-model
    parts keep showing), with both decisions in ``message`` and both C-Score bars in ``bar``,
    plus ``second`` (the second model's ``compare_faces``-like answer), ``comparison`` (the
    ``core.comparison.ModelComparison``) and ``table`` (``comparison_markdown``). Errors come
    back as a message: the same model twice, a model whose weights are missing, no face."""
    if image_a is None or image_b is None:
        return compare_faces(first, image_a, image_b)  # says to upload two photos
    m1, m2 = first.model_name, second.model_name
    if m1 == m2:
        return {"ok": False, "message": f"Both choosers name the same model, {m1}: choose another second model to compare with, "
                                        f'or "{NONE}" to see {m1} alone.'}  # fmt: skip
    for runner, which in ((first, "The face model"), (second, "The second model")):
        why = _cannot_run(runner)
        if why is not None:
            return {"ok": False, "message": f"{which}, {runner.model_name}, cannot run here: {why}", "words": ""}
    knobs = {**(knobs or {}), "preset": preset, **({"gallery": gallery} if gallery else {})}
    try:
        cmp = compare_models([first, second], image_a, image_b, list(methods or ()), progress=progress, faithfulness=deletion_scores,
                             names=("photo A", "photo B"), faces=faces, **knobs)  # fmt: skip
    except ModelUnavailableError as e:
        return {"ok": False, "message": f"A model cannot run here: {e}", "words": ""}
    except XFVError as e:
        return {"ok": False, "message": f"Could not compare these photos: {e}"}
    one, other = (pair_output(cmp.results[m], cmp.faithfulness.get(m, {}), image_a, image_b) for m in (m1, m2))
    out = dict(one)
    out.update(message=decisions_markdown(cmp, _same_picture(image_a, image_b)), bar=bars_html(cmp), second=other, comparison=cmp,
               table=comparison_markdown(cmp), details={**one["details"], "decisions": cmp.decisions(), "second_model": other["details"],
                                                        "comparison": [a.to_dict() for a in cmp.methods]})  # fmt: skip
    return out


def decisions_markdown(cmp: ModelComparison, same_picture: bool = False) -> str:
    """Both decisions: whether the models agree (the first sentence of ``ModelComparison.decisions``),
    then each model's verdict (``core.verdict_sentence``) with its notes."""
    lines = [f"**{cmp.decisions().split('. ', 1)[0].rstrip('.')}.**", ""]
    for m, res in cmp.results.items():
        lines.append(f"- **{m}**: {verdict_sentence(res)}" + "".join(f" _Note: {n}_" for n in res.notes))
    if same_picture:
        lines.append("\n_Note: photo A and photo B are the same picture, so the similarity is 1 by construction; compare two different photos._")
    return "\n".join(lines)


def bars_html(cmp: ModelComparison) -> str:
    """Each model's C-Score bar (``apps.handlers.confidence_bar``) under its name, side by side."""
    cells = "".join(f'<div style="flex:1;min-width:300px"><div style="font-family:sans-serif"><b>{html.escape(m)}</b></div>'
                    f"{confidence_bar(r.c_score, r.same)}</div>" for m, r in cmp.results.items())  # fmt: skip
    return f'<div style="display:flex;gap:32px;flex-wrap:wrap">{cells}</div>'


def _num(v: Any, fmt: str) -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(float(v), fmt)


def headers(cmp: ModelComparison) -> list[str]:
    m1, m2 = cmp.models[:2]
    return [h.format(m1=m1, m2=m2) for h in HEADERS]


def comparison_rows(cmp: ModelComparison) -> list[list[str]]:
    """One row per method both models mapped (``headers``): the rank correlations of the two
    models' maps of face A and of face B, the regions each relies on, and each map's deletion
    score on its own model with the random map's (lower: more faithful), as written on the page."""
    rows = []
    for a in cmp.methods:
        dels = []
        for m in a.models:
            s, rnd = a.faithfulness.get(m), cmp.faithfulness.get(m, {}).get("random")
            dels.append(
                "not measured" if not s else _num(s.get("deletion_auc"), "+.3f") + (f" ({_num(rnd.get('deletion_auc'), '+.3f')})" if rnd else "")
            )
        rho = [_num(r, "+.2f") for r in a.rank_correlation]
        rows.append([a.label, *rho, *(", ".join(a.regions.get(m) or []) or "none" for m in a.models), *dels])
    return rows


def not_compared(cmp: ModelComparison) -> list[str]:
    """The methods asked for that are not in the table, and why (a model's error, or no maps)."""
    done = {a.method for a in cmp.methods}
    first = next(iter(cmp.results.values()))
    out = []
    for e in first.explanations:
        if e.method in done:
            continue
        why = []
        for m, res in cmp.results.items():
            x = next((y for y in res.explanations if y.method == e.method), None)
            if x is None or not x.ok:
                why.append(f"{m}: {x.error if x is not None else 'not run'}")
            elif len(x.maps) != 2:
                why.append(f"{m}: words, no maps")
        out.append(f"**{e.label}** is not compared: " + ("; ".join(why) or "no maps to compare") + ".")
    return out


def comparison_markdown(cmp: ModelComparison) -> str:
    """The comparison table (``comparison_rows``) as Markdown, each method's sentence under it."""
    m1, m2 = cmp.models[:2]
    head = (f"### How the maps of {m1} and {m2} agree\n\nRank correlation: Spearman's rho of the two models' maps of a face over the "
            f"pixels both crops show (+1: the same ranking of pixels, 0: unrelated). Deletion score: each map measured on its own model; "
            f"lower is more faithful, next to a random map's.\n\n")  # fmt: skip
    rows = comparison_rows(cmp)
    if rows:
        cols = headers(cmp)
        table = "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + ["| " + " | ".join(r) + " |" for r in rows])
    else:
        table = "_No method gave maps on both models: only the decisions are compared._"
    words = [a.sentence for a in cmp.methods] + not_compared(cmp)
    return head + table + "".join(f"\n- {w}" if i else f"\n\n- {w}" for i, w in enumerate(words))


def model_captions(cells: list[tuple[np.ndarray, str]], res: Any, model: str) -> list[tuple[np.ndarray, str]]:
    """Grid cells (``apps.grid.gallery_items``) captioned "<method label> — <model>, face A: ..."."""
    labels = sorted({e.label for e in res.explanations}, key=len, reverse=True)
    out = []
    for pic, caption in cells:
        label = next((lab for lab in labels if caption.startswith(f"{lab}, face ")), None)
        out.append((pic, caption if label is None else f"{label} — {model}{caption[len(label) :]}"))
    return out


def second_grid(last: dict[str, Any] | None) -> dict[str, Any]:
    """The second model's grid and the comparison table of the page's last result (its
    ``State``): ``cells`` (empty with one model), ``model``, ``table`` ("" with one model)."""
    cmp = (last or {}).get("comparison") if (last or {}).get("kind") == "faces" else None
    if cmp is None:
        return {"cells": [], "model": None, "table": "", "result": None}
    m2 = cmp.models[1]
    res = cmp.results[m2]
    return {"cells": model_captions(gallery_items(res, cmp.faithfulness.get(m2, {})), res, m2), "model": m2,
            "table": comparison_markdown(cmp), "result": res}  # fmt: skip


def export_comparison(cmp: ModelComparison, folder: str | None = None) -> list[str]:
    """The audit report of both models (``core.report_compare.write_comparison_report``): an
    HTML and a JSON file in ``folder`` (a new temporary folder by default), for download."""
    from core.report_compare import write_comparison_report

    out = Path(folder or work_dir("report"))
    return [str(p) for p in write_comparison_report(cmp, out / "model_comparison")]


def cost_both(runners: Runners, model: str | None, model2: str | None, methods: list[str] | None, preset: str,
              knobs: dict[str, Any] | None = None) -> str:  # fmt: skip
    """The cost line (``apps.handlers.cost_text``) of the first model, and of the second one when one is chosen."""
    from apps.handlers import cost_text

    first = cost_text(runners.get(model), methods, preset, knobs)
    if not wants_second(model2) or not methods or model2 == model:
        return first
    try:
        second = runners.get(model2).forward_passes(methods, **{**(knobs or {}), "preset": preset})["total"]
    except XFVError as e:
        return f"{first} The second model cannot cost them: {e}"
    return f"{first} The second model ({model2}) runs them too: at most **{second:,}** forward passes of its own."
