"""Facts from a computed result: a ``PairResult`` (with its faithfulness scores, if any) or a
``CXRResult``, as plain English sentences built from its numbers, each tagged with its topic,
method and the parts of the face it speaks of."""

from __future__ import annotations

import hashlib
import math
from typing import Any, TypeGuard

import numpy as np

from ...types import Explanation, PairResult
from ..verdict import confidence_words, verdict_sentence
from .fact import Fact, Facts, f3, label_of
from .region_facts import region_facts
from .vocabulary import MEASURE_PARTS, parts_in

#: Hex digits of a result id.
ID_LENGTH = 12


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def _hash(*items: Any) -> str:
    h = hashlib.sha256()
    for x in items:
        if isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(repr(x).encode())
        h.update(b"\x00")
    return h.hexdigest()[:ID_LENGTH]


def result_id(result: Any) -> str:
    """A short hash of a result: for a face pair its model, weights, similarity, threshold
    and the two crops; for an X-ray its mode, probability and crop. The same comparison
    gives the same id; another pair, model or calibration another one."""
    if isinstance(result, PairResult) or hasattr(result, "pair"):
        crops = [getattr(f, "image", None) for f in result.pair]
        return _hash("faces", result.model, result.weights_hash, f"{float(result.similarity):.6f}", f"{float(result.threshold):.6f}", *crops)
    return _hash("cxr", str(result.mode), f"{float(result.probability):.6f}", getattr(result, "image", None))


def _concept_facts(e: Explanation) -> list[Fact]:
    facts = [Fact("concept", s, None, e.method, tuple(p.name for p in parts_in(s))) for s in e.text]
    table = e.extras.get("table")
    if not isinstance(table, list):
        return facts
    ranked = set(e.extras.get("ranked") or [])
    for r in table:
        if not isinstance(r, dict) or r.get("group") in ranked or "concept_a" not in r:
            continue
        if r.get("shared"):
            s = f"Both faces show {r['concept_a']} ({r['component']}, {r['group']}: {r['p_a']:.0%} and {r['p_b']:.0%})."
        else:
            s = (f"The faces differ in {r['group']} ({r['component']}): the first shows {r['concept_a']} ({r['p_a']:.0%}), "
                 f"the second {r['concept_b']} ({r['p_b']:.0%}); difference {r['difference']:.2f}.")  # fmt: skip
        parts = tuple(p.name for p in parts_in(f"{r.get('component', '')} {r.get('group', '')}"))
        facts.append(Fact("concept", s, dict(r), e.method, parts))
    return facts


def _geometry_facts(e: Explanation) -> list[Fact]:
    """One fact per measured proportion, tagged with its key and part; then the caveat."""
    measures = e.extras.get("measures")
    first = measures[0] if isinstance(measures, list) and measures and isinstance(measures[0], list) else []
    keys = [m.get("key") for m in first]
    labels = [m.get("label", "") for m in first] if keys else []
    facts = []
    for i, s in enumerate(e.text):
        key = keys[i] if i < len(keys) and labels[i] in s else None
        parts = (MEASURE_PARTS[key],) if key in MEASURE_PARTS else ()
        facts.append(Fact("geometry", s, None, e.method, parts, key))
    return facts


def _faithfulness_facts(faith: dict[str, dict[str, float]], labels: dict[str, str]) -> list[Fact]:
    random = faith.get("random", {})
    r_del = random.get("deletion_auc")
    scored = {m: s for m, s in faith.items() if m != "random" and _finite(s.get("deletion_auc"))}
    facts: list[Fact] = []
    if scored:
        best = min(scored, key=lambda m: scored[m]["deletion_auc"])
        d = scored[best]["deletion_auc"]
        s = f"The most faithful map on this pair by the deletion test is {labels.get(best, best)} (deletion area {f3(d)}; lower is better)"
        if _finite(r_del):
            s += f", {'better' if d < r_del else 'no better'} than a random map ({f3(r_del)})"
        facts.append(Fact("faithfulness", s + ".", {"method": best, "deletion_auc": d, "random": r_del}, best))
    for m, sc in scored.items():
        d = sc["deletion_auc"]
        s = f"Deletion test of {labels.get(m, m)}: hiding the pixels its map ranks first gives a deletion area of {f3(d)}"
        if _finite(r_del):
            s += f" against {f3(r_del)} for a random map (lower is better), so it is {'more' if d < r_del else 'not more'} faithful than chance"
        ins = sc.get("insertion_auc")
        if _finite(ins):
            s += f"; insertion area {f3(ins)}" + (
                f" against {f3(random['insertion_auc'])} (higher is better)" if _finite(random.get("insertion_auc")) else ""
            )
        pc = sc.get("prediction_change_pct")
        if _finite(pc):
            s += f"; hiding its top 20 % changes the decision in {pc:.0f} % of the probes"
        facts.append(Fact("faithfulness", s + ".", dict(sc), m))
    return facts


def _description(method: str) -> str:
    try:
        from ...registry import explainer_spec

        d = explainer_spec(method).description
    except Exception:  # an unregistered method has no description
        return ""
    return d if not d or d.endswith(".") else d + "."


def facts_from_result(result: PairResult, faithfulness: dict[str, dict[str, float]] | None = None) -> Facts:
    """The facts of one comparison, in plain sentences built from its numbers.

    ``faithfulness`` is ``Runner.faithfulness(result)``: ``{method: {"deletion_auc": ...}}``
    with a ``"random"`` baseline.
    """
    sim, thr, same = float(result.similarity), float(result.threshold), bool(result.same)
    margin = abs(sim - thr)
    facts = [Fact("decision", verdict_sentence(result), {"same": same, "similarity": sim, "threshold": thr, "c_score": result.c_score})]
    if same:
        why = f"It is a match because the similarity {f3(sim)} is at or above the threshold {f3(thr)}, by a margin of {f3(margin)}."
    else:
        why = f"It is not a match because the similarity {f3(sim)} is below the threshold {f3(thr)}, by a margin of {f3(margin)}."
    facts.append(Fact("decision", why, {"same": same, "similarity": sim, "threshold": thr, "margin": margin}))
    facts.append(Fact("similarity", f"The similarity of the two faces is {f3(sim)}: the cosine similarity of their embeddings, "
                      "from -1 (opposite) to 1 (identical); higher means more alike.", sim))  # fmt: skip
    calib = result.params.get("calibration")
    s = f"The decision threshold is {f3(thr)}: pairs with a similarity at or above it are taken as the same person"
    facts.append(Fact("threshold", s + (f"; it comes from the calibration on {calib}." if calib else "."), thr))
    if result.c_score is not None:
        c = float(result.c_score)
        facts.append(Fact("confidence", f"The C-Score, the confidence that this decision is right (from 0.5 to 1), is {f3(c)}: "
                          f"the model is {confidence_words(c)} that they are {'the same person' if same else 'different people'}.", c))  # fmt: skip
    else:
        facts.append(Fact("confidence", "No C-Score (confidence) was computed for this result: it needs a calibration of the model; "
                          f"the only measure of certainty is the margin of {f3(margin)} to the threshold.", None))  # fmt: skip
    short = result.weights_hash[:16] if result.weights_hash else "unknown"
    device = result.params.get("device")
    s = f"The face recognition model, the network that turned each face into an embedding, is {result.model} (weights SHA-256 {short}...)"
    facts.append(Fact("model", s + (f", run on {device}." if device else "."), {"model": result.model, "weights_sha256": result.weights_hash}))
    ok = [e for e in result.explanations if e.ok]
    if ok:
        facts.append(Fact("method", "The explanation methods run on this pair: " + ", ".join(f"{label_of(e)} ({e.method})" for e in ok) + ".",
                          [e.method for e in ok]))  # fmt: skip
    for e in ok:
        desc = _description(e.method)
        if desc:
            s = desc if desc.lower().startswith(label_of(e).lower()) else f"{label_of(e)}: {desc}"
            facts.append(Fact("method", s, None, e.method))
    for e in result.explanations:
        if not e.ok:
            facts.append(Fact("method", f"{label_of(e)} failed: {e.error}", None, e.method))
    regions = region_facts(ok)
    facts.extend(f for f in regions if not f.detail)
    for e in ok:
        if e.method == "concepts" or e.extras.get("descriptor_set"):
            facts.extend(_concept_facts(e))
        elif e.method == "geometry":
            facts.extend(_geometry_facts(e))
        else:
            facts.extend(Fact("region", f"{label_of(e)}: {s[0].lower() + s[1:] if s.startswith('According') else s}", None, e.method) for s in e.text)
    if faithfulness:
        facts.extend(_faithfulness_facts(faithfulness, {e.method: label_of(e) for e in result.explanations}))
    elif any(e.maps for e in ok):
        facts.append(Fact("faithfulness", "No faithfulness (deletion) test was run on these maps, so none can be called the most faithful; "
                          "run it to compare each map with a random one.", None))  # fmt: skip
    facts.extend(Fact("detection", n if n.endswith(".") else n + ".") for n in result.notes)
    facts.extend(f for f in regions if f.detail)
    return Facts(facts, result_id(result))


def facts_from_cxr(result: Any) -> Facts:
    """The facts of one chest X-ray diagnosis (``core.cxr.CXRResult``)."""
    p, effusion, mode = float(result.probability), bool(result.effusion), str(result.mode)
    what = "pleural effusion" if effusion else "no pleural effusion"
    facts = [Fact("decision", f"The X-ray was read as {what}: the model's probability of pleural effusion is {p:.2f}.",
                  {"effusion": effusion, "probability": p})]  # fmt: skip
    facts += [Fact("decision", s) for s in result.text[:1]]
    facts.append(
        Fact("confidence", f"How sure the model is: it gives pleural effusion a probability of {p:.2f}, and no pleural effusion {1.0 - p:.2f}.", p)
    )
    if mode == "supervised":
        facts.append(
            Fact("model", "The model is a CLIP concept bottleneck with a trained head: the decision is made through the radiology descriptors.", mode)
        )
    else:
        facts.append(Fact("model", "The model is zero-shot CLIP: it compared the image with the two class prompts; the descriptors describe "
                          "the image, the decision was not made through them.", mode))  # fmt: skip
    rows = [r for r in result.concepts if isinstance(r, dict) and "descriptor" in r]
    if rows:
        names = [r["descriptor"] for r in rows[:3]]
        lead = "The descriptors that weigh most in the decision" if mode == "supervised" else "What the X-ray shows most clearly, by the model"
        facts.append(Fact("concept", f"{lead}: {', '.join(names)}.", names))
    for r in rows:
        w = r.get("weight")
        if w is not None and _finite(w):
            side = "towards" if w > 0 else "against"
            s = f"{r['descriptor']} ({r['group']}, probability {r['probability']:.0%}) points {side} pleural effusion, weight {w:+.3f}."
        else:
            s = f"The model sees {r['descriptor']} ({r['group']}) with probability {r['probability']:.0%}."
        facts.append(Fact("concept", s[0].upper() + s[1:], dict(r)))
    return Facts(facts, result_id(result))
