"""Facts from the explainability tables of the maps (``Explanation.extras["regions"]``: one
list of rows per face, each row with ``region``, ``label``, ``similar`` and ``dissimilar``
shares; other keys are ignored).

Per side of the evidence (similar, dissimilar, or relevance for an unsigned map):

* one overall fact, the region with the largest mean share over all maps (two maps or more);
* one short fact per method: its top three regions, on average over its faces' maps;
* detail facts, used only when a question asks for them: each map's full table, and each
  part of the face's share of every method's evidence ("the nose holds 3 % ...").
"""

from __future__ import annotations

from typing import Any

from ...types import Explanation
from .fact import Fact, label_of, pct
from .vocabulary import OTHER, OTHER_WORDS, Part, part_of_region

#: Regions named in a method's short fact.
TOP_REGIONS = 3

_OVERALL_OTHER = "the rest of the image, outside the named facial regions"
_ORDINAL = {1: "the most of any region", 2: "the second most of any region", 3: "the third most of any region"}


def _words(row: dict[str, Any]) -> str:
    return "the rest of the image" if row.get("region") == OTHER else f"the {row.get('label') or row.get('region', 'region')}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _maps(e: Explanation) -> list[tuple[int | None, list[dict[str, Any]]]]:
    """The distinct tables of a method, each with its face (``None``: one map shared by both)."""
    tables = e.extras.get("regions")
    if not isinstance(tables, list):
        return []
    if len(tables) == 2 and tables[0] is not None and tables[0] == tables[1]:
        return [(None, tables[0])]
    return [(i, rows) for i, rows in enumerate(tables) if rows]


def _whose(maps: list[tuple[int | None, list[dict[str, Any]]]], average: bool = False) -> str:
    if len(maps) > 1:
        return "on average over both faces' maps" if average else "in both faces' maps"
    face = maps[0][0]
    return "in the map shared by both faces" if face is None else ("in the first face's map" if face == 0 else "in the second face's map")


def _sides(e: Explanation) -> tuple[tuple[str, str], ...]:
    """(side, row key) of the evidence a map has."""
    return (("similar", "similar"), ("dissimilar", "dissimilar")) if e.signed else (("relevance", "similar"),)


_LEADS = {
    "similar": ("the region that made them look most alike is", "the regions that made them look most alike are"),
    "dissimilar": ("the region that made them look most different is", "the regions that made them look most different are"),
    "relevance": ("the region the model relied on most is", "the regions the model relied on most are"),
}


def _mean(maps: list[tuple[int | None, list[dict[str, Any]]]], key: str) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    sums: dict[str, float] = {}
    rows: dict[str, dict[str, Any]] = {}
    for _, table in maps:
        for r in table:
            sums[r["region"]] = sums.get(r["region"], 0.0) + float(r.get(key, 0.0))
            rows.setdefault(r["region"], r)
    return {k: v / len(maps) for k, v in sums.items()}, rows


def _summary(e: Explanation, maps: list[tuple[int | None, list[dict[str, Any]]]], side: str, key: str) -> Fact | None:
    maps = [(face, rows) for face, rows in maps if any(pct(r.get(key, 0.0)) for r in rows)]  # a map with no such evidence says nothing
    if not maps:
        return None
    means, rows = _mean(maps, key)
    ranked = sorted((k for k in means if pct(means[k]) > 0), key=lambda k: -means[k])
    if not ranked:
        return None
    top = ranked[:TOP_REGIONS]
    label = label_of(e)
    lead = _LEADS[side][len(top) > 1]
    s = f"By {label}, {_whose(maps, average=True)}, {lead} " + _and([f"{_words(rows[k])} ({pct(means[k])} %)" for k in top]) + "."
    value = {"side": side, "region": top[0], "label": rows[top[0]].get("label"), "share": means[top[0]], "face": None, "method_label": label,
             "ranking": [(k, means[k]) for k in ranked], "words": {k: _words(rows[k]) for k in ranked}, "summary": True}  # fmt: skip
    return Fact("region", s, value, e.method)


def _table(e: Explanation, face: int | None, rows: list[dict[str, Any]]) -> Fact:
    parts = []
    for side, key in _sides(e):
        ranked = sorted((r for r in rows if pct(r.get(key, 0.0)) > 0), key=lambda r: -float(r.get(key, 0.0)))
        what = "similar evidence" if side == "similar" else ("dissimilar evidence" if side == "dissimilar" else "relevance")
        if not ranked:
            parts.append(f"{what}: none")
            continue
        rest = "" if len(ranked) == len(rows) else ", none in the other regions"
        parts.append(f"{what}: " + ", ".join(f"{_words(r)} {pct(r.get(key, 0.0))} %" for r in ranked) + rest)
    s = f"All regions by {label_of(e)}, {_whose([(face, rows)])}: " + "; ".join(parts) + "."
    return Fact("region", s, {"table": True, "face": face, "method_label": label_of(e)}, e.method, detail=True)


def _amounts(values: list[int], faces: list[int | None], first: bool, what: str) -> str:
    """ "5 % (first face) and 2 % (second face) of the similar evidence", "5 % of ... in each map"."""
    if len(values) == 1:
        return f"{values[0]} % of {what}"
    if len(set(values)) == 1:
        return f"{values[0]} % of {what} in each map"
    if first:
        return " and ".join(f"{v} % ({'first' if f == 0 else 'second'} face)" for v, f in zip(values, faces, strict=True)) + f" of {what}"
    return " and ".join(f"{v} %" for v in values) + f" of {what}"


def _shares(e: Explanation, maps: list[tuple[int | None, list[dict[str, Any]]]]) -> list[Fact]:
    """One fact per part of the face: its share of each side of the evidence, per map."""
    parts: dict[str, Part] = {}
    for _, table in maps:
        for r in table:
            p = part_of_region(r["region"], r.get("label"))
            parts.setdefault(p.name, p)
    faces = [f for f, _ in maps]
    facts = []
    for name, p in parts.items():
        clauses = []
        for n, (side, key) in enumerate(_sides(e)):
            per_map, ranks = [], []
            for _, table in maps:
                grouped: dict[str, float] = {}
                for r in table:
                    q = part_of_region(r["region"], r.get("label")).name
                    grouped[q] = grouped.get(q, 0.0) + float(r.get(key, 0.0))
                per_map.append(pct(grouped.get(name, 0.0)))
                order = sorted(grouped, key=lambda q: -grouped[q])
                ranks.append(order.index(name) + 1 if grouped.get(name, 0.0) > 0 else 0)
            what = {"similar": "similar evidence", "dissimilar": "dissimilar evidence", "relevance": "relevance"}[side]
            if not any(any(pct(r.get(key, 0.0)) for r in table) for _, table in maps):
                clauses.append(f"no {what} (its {'maps have' if len(maps) > 1 else 'map has'} none)")
                continue
            rank = f" ({_ORDINAL[ranks[0]]})" if len(set(ranks)) == 1 and ranks[0] in _ORDINAL and min(per_map) > 0 else ""
            clauses.append(_amounts(per_map, faces, n == 0, f"the {what}") + rank)
        words = OTHER_WORDS if name == "rest" else p.words
        verb = "hold" if p.plural else "holds"
        s = f"By {label_of(e)}, {_whose(maps)}, {words} {verb} " + ", and ".join(clauses) + "."
        facts.append(Fact("region", s, {"part": name, "method_label": label_of(e)}, e.method, parts=(name,), detail=True))
    return facts


def region_facts(exps: list[Explanation]) -> list[Fact]:
    """The facts of every method's region tables: overall, per method, then the details."""
    facts: list[Fact] = []
    details: list[Fact] = []
    sums: dict[str, dict[str, list[float]]] = {"similar": {}, "dissimilar": {}}
    labels: dict[str, str] = {}
    n_maps = {"similar": 0, "dissimilar": 0}
    methods: dict[str, list[str]] = {"similar": [], "dissimilar": []}
    for e in exps:
        maps = _maps(e)
        if not maps:
            continue
        for side, key in _sides(e):
            f = _summary(e, maps, side, key)
            if f is not None:
                facts.append(f)
        details += [_table(e, face, rows) for face, rows in maps]
        details += _shares(e, maps)
        for _, rows in maps:
            for side in ("similar", "dissimilar") if e.signed else ("similar",):
                if not any(pct(r.get(side, 0.0)) for r in rows):
                    continue
                n_maps[side] += 1
                if label_of(e) not in methods[side]:
                    methods[side].append(label_of(e))
                for r in rows:
                    sums[side].setdefault(r["region"], []).append(float(r.get(side, 0.0)))
                    labels[r["region"]] = r.get("label", r["region"])
    if not details:
        return facts
    overall = []
    for side, lead, what in (
        ("similar", "look most alike", "of the similar evidence or relevance"),
        ("dissimilar", "look most different", "of the dissimilar evidence"),
    ):
        if n_maps[side] < 2:
            continue
        means = {k: sum(v) / n_maps[side] for k, v in sums[side].items()}
        best = max(means, key=lambda k: means[k])
        if pct(means[best]) == 0:
            continue
        words = _OVERALL_OTHER if best == OTHER else f"the {labels[best]}"
        s = (f"Over the {n_maps[side]} maps of {_and(methods[side])}, the region that made them {lead} is {words} "
             f"(on average {pct(means[best])} % {what}).")  # fmt: skip
        overall.append(Fact("region", s, {"side": side, "region": best, "label": labels[best], "share": means[best], "overall": True}))
    facts = overall + facts
    if not any(isinstance(f.value, dict) and f.value.get("side") == "dissimilar" for f in facts):
        if any(e.signed and _maps(e) for e in exps):
            s = "None of the maps shows evidence that pulls the faces apart (no map has negative, dissimilar values)."
        else:
            s = "None of the maps run is signed, so none shows which regions pulled the faces apart (they show relevance only)."
        facts.append(Fact("region", s, {"side": "dissimilar", "region": None}))
    return facts + details
