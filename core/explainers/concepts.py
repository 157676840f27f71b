"""Explanations in words from a CLIP concept bottleneck (Yalavarthi and Ratha):
``s(a, b) = cos(p_a W, p_b W) = sum_i c_i`` with
``c_i = (p_a,i (W e_b)_i + p_b,i (W e_a)_i) / (2 |e_a| |e_b|)``, ``e = p W``, where ``p`` are the
Group-SoftMax concept probabilities of ``core.models.cbm``: every concept's share of the
similarity the decision is made on, so the words are faithful to the decision.

* A match: per group, the concept both faces activate most (the same alternative wins the
  group's softmax in both), ranked by that concept's share ``c_i`` of the similarity (the
  paper: "the top closest concepts of reference and probe which are commonly activated in
  each concept group").
* A non-match: the groups whose activated concepts differ most, by the total-variation
  distance ``0.5 sum |p_a - p_b|`` of the two faces' distributions over the group's
  alternatives (the paper: "the top concept groups where the activated concepts differ the
  most").

The result carries sentences, a table of every group (``extras["table"]``) and chart data
in plotly's figure format (``extras["chart"]``, a plain dict: no plotly needed to build it).
It has no maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.cbm import concept_model
from ..types import Explanation, FaceEmbedder, FacePair
from .base import BaseExplainer, explainer, fixed_cost
from .knobs import knob, params_from
from .perturb import crop_at_input_size

TOP = 5


@dataclass(frozen=True)
class ConceptParams:
    """The words' knob (``core.explainers.knobs``)."""

    top: int = knob(TOP, "descriptors named in the words: those with the largest shares of the similarity", low=1, high=50)


def concept_shares(pa: np.ndarray, pb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each concept's share of the cosine similarity of ``pa W`` and ``pb W`` (sums to it)."""
    ea, eb = pa @ w, pb @ w
    norm = float(np.linalg.norm(ea) * np.linalg.norm(eb))
    if norm == 0:
        return np.zeros_like(pa)
    return (pa * (w @ eb) + pb * (w @ ea)) / (2 * norm)


def group_table(pa: np.ndarray, pb: np.ndarray, shares: np.ndarray, cbm: Any) -> list[dict[str, Any]]:
    """One row per descriptor group: each face's activated concept and its probability,
    whether they agree, the group's and the shared concept's share of the similarity, and
    the total-variation distance between the faces' distributions over the group."""
    rows = []
    ids = np.asarray(cbm.descriptors.group_ids)
    names = cbm.descriptors.descriptors
    for gi, g in enumerate(cbm.descriptors.groups):
        idx = np.nonzero(ids == gi)[0]
        ia, ib = idx[int(np.argmax(pa[idx]))], idx[int(np.argmax(pb[idx]))]
        rows.append({
            "component": g.component, "group": g.name,
            "concept_a": names[ia], "p_a": float(pa[ia]), "concept_b": names[ib], "p_b": float(pb[ib]),
            "shared": bool(ia == ib), "share": float(shares[idx].sum()), "concept_share": float(shares[ia]) if ia == ib else 0.0,
            "difference": float(0.5 * np.abs(pa[idx] - pb[idx]).sum()),
        })  # fmt: skip
    return rows


def bar_chart(labels: list[str], values: list[float], title: str, axis: str) -> dict[str, Any]:
    """A horizontal bar chart as a plotly figure dict (``plotly.io.from_json`` reads it)."""
    return {
        "data": [{"type": "bar", "orientation": "h", "x": values[::-1], "y": labels[::-1], "marker": {"color": "#3b7dd8"}}],
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": axis}}, "margin": {"l": 220, "r": 20, "t": 40, "b": 40}},
    }


@explainer("concepts", label="Concepts in words (CLIP bottleneck)", family="concepts", requires=("clip_text",), cost=fixed_cost(2),
           gives_maps=False, knobs=ConceptParams, order=60,
           description="Yalavarthi and Ratha: the facial descriptors both faces share (match) or that differ most (non-match), "
                       "with their share of the similarity (concept-bottleneck models).")  # fmt: skip
class ConceptExplainer(BaseExplainer):
    """Words for a pair from the concept bottleneck that made the decision."""

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        cbm = concept_model(embedder)
        thr = knobs.get("decision_threshold")
        if thr is None:
            raise ValueError("concepts needs decision_threshold (the Runner passes the model's threshold)")
        top = int(params_from(ConceptParams, knobs).top)
        size = int(embedder.input_size)
        x = embedder.preprocess([crop_at_input_size(f.image, size) for f in pair])
        with torch.no_grad():
            out = cbm.concepts(x)
        pa, pb = (out.probs[i].double().cpu().numpy() for i in range(2))
        w = cbm.W.detach().double().cpu().numpy()
        shares = concept_shares(pa, pb, w)
        ea, eb = pa @ w, pb @ w
        similarity = float(ea @ eb / (np.linalg.norm(ea) * np.linalg.norm(eb)))
        match = similarity >= float(thr)
        rows = group_table(pa, pb, shares, cbm)
        if match:
            ranked = sorted((r for r in rows if r["shared"]), key=lambda r: -r["concept_share"])[:top]
            text = [f"Match (similarity {similarity:.3f} vs threshold {float(thr):.3f}), made on {len(cbm.descriptors)} facial descriptors; "
                    f"the two faces agree in {sum(r['shared'] for r in rows)} of {len(rows)} descriptor groups."]  # fmt: skip
            text += [f"Both faces show {r['concept_a']} ({r['component']}, {r['group']}: {r['p_a']:.0%} and {r['p_b']:.0%}); "
                     f"{100 * r['concept_share'] / similarity:.1f} % of the similarity." for r in ranked]  # fmt: skip
            chart = bar_chart([r["concept_a"] for r in ranked], [r["concept_share"] for r in ranked], "Shared concepts", "share of the similarity")
        else:
            ranked = sorted(rows, key=lambda r: -r["difference"])[:top]
            text = [f"No match (similarity {similarity:.3f} vs threshold {float(thr):.3f}); the descriptor groups that differ most:"]
            text += [f"{r['component'].capitalize()}, {r['group']}: the first face shows {r['concept_a']} ({r['p_a']:.0%}), "
                     f"the second {r['concept_b']} ({r['p_b']:.0%}); difference {r['difference']:.2f}." for r in ranked]  # fmt: skip
            chart = bar_chart([f"{r['group']}: {r['concept_a']} / {r['concept_b']}" for r in ranked], [r["difference"] for r in ranked],
                              "Groups that differ most", "difference of the concept distributions (0-1)")  # fmt: skip
        if cbm.zero_shot:
            text.append("Zero-shot bottleneck (W is the identity, no trained adapter): the similarity is that of the two faces' concept profiles.")
        scores = {"similarity": similarity, "shared_groups": float(sum(r["shared"] for r in rows)), "groups": float(len(rows))}
        extras = {"decision": "match" if match else "non-match", "table": rows, "ranked": [r["group"] for r in ranked], "chart": chart,
                  "zero_shot": cbm.zero_shot, "descriptor_set": cbm.descriptors.name,
                  "probabilities": [pa.astype(np.float32), pb.astype(np.float32)], "descriptors": cbm.descriptors.descriptors}  # fmt: skip
        return Explanation(method=self.name, label=self.label, scores=scores, text=text, extras=extras)
