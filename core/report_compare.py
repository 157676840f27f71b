"""The audit report of one pair on several face models (``core.comparison``): the decisions,
a table of how each method's maps agree between the models (rank correlation per face, the
regions each relies on, each map's deletion and insertion areas on its own model, against a
random map's), and then each model's full report (``core.report.report_body``).
HTML (self-contained) and JSON (each model's exact report JSON and the comparison).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .comparison import ModelComparison
from .report import html_page, report_body, report_json


def _num(v: Any, fmt: str = "+.3f") -> str:
    return "n/a" if v is None else format(float(v), fmt)


def comparison_table(cmp: ModelComparison) -> str:
    """One row per method and model pair: rank correlations, regions, faithfulness, the sentence."""
    if not cmp.methods:
        return "<p>No method gave maps on both models.</p>"
    head = ("<tr><th>method</th><th>models</th><th>rank correlation (face A, face B)</th><th>regions relied on</th>"
            "<th>deletion ↓ / insertion ↑ on its own model (random map)</th><th>in words</th></tr>")  # fmt: skip
    rows = []
    for a in cmp.methods:
        regions = "<br>".join(f"{html.escape(m)}: {html.escape(', '.join(r) or 'none')}" for m, r in a.regions.items())
        faith = []
        for m in a.models:
            s, rnd = a.faithfulness.get(m), cmp.faithfulness.get(m, {}).get("random", {})
            if s:
                faith.append(f"{html.escape(m)}: {_num(s.get('deletion_auc'))} / {_num(s.get('insertion_auc'))} "
                             f"({_num(rnd.get('deletion_auc'))} / {_num(rnd.get('insertion_auc'))})")  # fmt: skip
        rows.append(f"<tr><td>{html.escape(a.label)}</td><td>{html.escape(' vs '.join(a.models))}</td>"
                    f"<td>{', '.join(_num(r, '+.2f') for r in a.rank_correlation)}</td><td>{regions}</td>"
                    f"<td>{'<br>'.join(faith) or 'n/a'}</td><td>{html.escape(a.sentence)}</td></tr>")  # fmt: skip
    return f"<table>{head}{''.join(rows)}</table>"


def comparison_html(cmp: ModelComparison) -> str:
    sections = "".join(f"<h2>{html.escape(m)}</h2>{report_body(r, cmp.faithfulness.get(m), heading='h3')}" for m, r in cmp.results.items())
    body = (f'<p class="verdict">{html.escape(cmp.decisions())}</p><h2>The models compared</h2>'
            "<p>Rank correlation: Spearman's rho of the two models' maps of each face over the pixels both crops show "
            "(the second model's map warped onto the first one's crop through the photo). A model relies on a region "
            "when the region holds at least 1.5 times its area's share of the map's supporting evidence.</p>"
            f"{comparison_table(cmp)}{sections}")  # fmt: skip
    return html_page(f"Face comparison report: {', '.join(cmp.models)}", body)


def comparison_json(cmp: ModelComparison) -> dict[str, Any]:
    return {"decisions": cmp.decisions(), "comparison": [a.to_dict() for a in cmp.methods],
            "models": {m: report_json(r, cmp.faithfulness.get(m)) for m, r in cmp.results.items()}}  # fmt: skip


def write_comparison_report(cmp: ModelComparison, path: str | Path) -> tuple[Path, Path]:
    """``PATH.html`` and ``PATH.json`` (any suffix of ``path`` is replaced)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".html", ".json") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    h, j = base.with_suffix(".html"), base.with_suffix(".json")
    h.write_text(comparison_html(cmp), encoding="utf-8")
    j.write_text(json.dumps(comparison_json(cmp), indent=1, allow_nan=False), encoding="utf-8")
    return h, j
