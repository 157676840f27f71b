"""Answers about regions of the face: short summaries of the maps' tables (the top regions
per method, with an offer of the full table), a full table when it is asked for, and
questions that name a part of the face or a measure ("Do the noses differ?", "How far apart
are the eyes?"), answered only from the facts about that part."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .answers import MAX_SENTENCES, Routed, dedupe
from .fact import Fact, pct
from .lookup import mentioned_methods, method_names, short_label, side_of, topic
from .vocabulary import MEASURE_NOUNS, Part, measures_in, parts_in

#: Regions per method in a short answer.
SHORT_TOP = 2

#: Words that ask about the maps rather than the photos ("Did the nose MATTER?").
_MAP_WORDS = re.compile(r"\bmaps?\b|\bevidence\b|\bregions?\b|\bmatter|\bcontribut|\brel(y|ied|iance)\b|\bimportan|\bweigh|\bfocus|"
                        r"\blook(ed)? at\b|\battention\b|\bheat ?map|\bsaliency\b|\bexplanation", re.IGNORECASE)  # fmt: skip

#: Words that ask for a whole table.
FULL_TABLE = re.compile(r"\ball (the |of the )?(regions|rows)\b|\b(full|whole|complete|entire) (region |explainability )?(table|list)\b"
                        r"|\bevery region\b|\beach region\b|\b(explainability|region) table\b", re.IGNORECASE)  # fmt: skip


def _offer(labels: list[str]) -> str:
    if not labels:
        return ""
    name = short_label(labels[0])
    more = " (or of another method)" if len(labels) > 1 else ""
    return f" Ask \u201call regions of {name}\u201d{more} for the full table."


def _clause(f: Fact) -> str:
    """ "CAM: the rest of the image (56 %) and the forehead (26 %)", from a method's short fact."""
    words = [f"{f.value['words'][region]} ({pct(share)} %)" for region, share in f.value["ranking"][:SHORT_TOP]]
    return f"{short_label(f.value['method_label'])}: " + " and ".join(words)


def regions_reply(side: str) -> Callable[[str, Sequence[Fact]], Routed | None]:
    """Which regions made the faces look alike (``side="similar"``, relevance included) or
    different: the overall region and each method's top two in two sentences, or the
    method the question names; then an offer of the full table."""
    sides = ("dissimilar",) if side == "dissimilar" else ("similar", "relevance")
    name = "region_different" if side == "dissimilar" else "region_alike"

    def reply(question: str, facts: Sequence[Fact]) -> Routed | None:
        rows = [f for f in topic(facts, "region") if side_of(f) in sides]
        per = [f for f in rows if f.value.get("summary")]
        per = sorted(per, key=lambda f: f.value["side"] == "relevance")  # signed maps first (stable)
        wanted = mentioned_methods(question, facts)
        if wanted:
            chosen = [f for f in per if f.method in wanted]
            if chosen:
                labels = [f.value["method_label"] for f in chosen]
                return Routed(name, chosen, " ".join(f.sentence for f in chosen) + _offer(labels))
        if not per:
            plain = [f for f in rows if f.value.get("region") is None]  # "none of the maps is signed"
            return Routed(name, plain) if plain else None
        if len(per) == 1:  # one method: its short fact (the overall mean would only repeat it)
            return Routed(name, per, per[0].sentence + _offer([per[0].value["method_label"]]))
        overall = [f for f in rows if f.value.get("overall")]
        what = "similar evidence or relevance" if side != "dissimilar" else "dissimilar evidence"
        text = " ".join(f.sentence for f in overall)
        text += f" By method (share of its {what}): " + "; ".join(_clause(f) for f in per[:4]) + "."
        return Routed(name, overall + per[:4], text.strip() + _offer([f.value["method_label"] for f in per]))

    return reply


def full_table(question: str, facts: Sequence[Fact]) -> Routed | None:
    """Every region of each map's table (of the methods the question names, else of all)."""
    tables = [f for f in facts if f.detail and isinstance(f.value, dict) and f.value.get("table")]
    wanted = mentioned_methods(question, facts)
    chosen = [f for f in tables if f.method in wanted] or tables
    return Routed("region_table", chosen) if chosen else None


def _describes(f: Fact, p: Part) -> bool:
    return p.name in f.parts and f.topic in ("geometry", "concept")


def _nothing(p: Part, facts: Sequence[Fact]) -> str:
    have_maps = bool(method_names(facts))
    have_geometry = any(f.topic == "geometry" for f in facts)
    why = []
    why.append("its maps have no region for it" if have_maps else "no map with a region table was run")
    why.append("no measured proportion or descriptor describes it" if have_geometry or any(f.topic == "concept" for f in facts)
               else "no measured proportions or descriptors were computed")  # fmt: skip
    return f"There is nothing about {p.words} in this result: {why[0]}, and {why[1]}."


def _part_facts(question: str, p: Part, facts: Sequence[Fact], quota: int) -> list[Fact]:
    desc = [f for f in facts if _describes(f, p)]
    narrow = measures_in(question) & set(p.measures)
    if narrow:  # "How WIDE is the nose?": that measure (and its descriptors) only, no maps
        measured = [f for f in desc if f.measure in narrow]
        if measured:
            return (measured + [f for f in desc if f.topic == "concept"])[:quota]
    wanted = mentioned_methods(question, facts)
    maps = [f for f in facts if f.detail and p.name in f.parts and (not wanted or f.method in wanted)]
    if not maps and p.outside:  # ears, hair, jaw: only the rest of the image holds them
        maps = [f for f in facts if f.detail and "rest" in f.parts and (not wanted or f.method in wanted)]
    if _MAP_WORDS.search(question) or wanted:
        return maps[: max(1, quota - 1)] + desc[:1]
    return desc[:2] + maps[: max(1, quota - min(2, len(desc)))]


def part_reply(question: str, facts: Sequence[Fact], max_sentences: int = MAX_SENTENCES) -> Routed | None:
    """A question naming parts of the face: the measured proportions and descriptors of
    each part, and each method's share of evidence there; says so when there is none."""
    parts = parts_in(question)
    if not parts:
        return None
    quota = max(2, max_sentences // len(parts))
    chosen: list[Fact] = []
    notes: list[str] = []
    for p in parts:
        found = _part_facts(question, p, facts, quota)
        if not found:
            notes.append(_nothing(p, facts))
        elif p.outside and any("rest" in f.parts for f in found):
            notes.append(f"The maps have no region of their own for {p.words}: they count in the rest of the image, "
                         "with hair, ears, the face outline and the background.")  # fmt: skip
        chosen += found
    chosen = dedupe(chosen)
    if not chosen:
        return Routed("part", [], " ".join(notes), known=False)
    text = " ".join([*notes, *(f.sentence for f in chosen)])
    return Routed("part", chosen, text)


def measure_reply(question: str, facts: Sequence[Fact]) -> Routed | None:
    """A question about the measured proportions without a part ("Which proportions
    differ?", "What about the width?"): those measures, or all of them."""
    if not MEASURE_NOUNS.search(question):
        return None
    geometry = [f for f in facts if f.topic == "geometry"]
    keys = measures_in(question)
    narrow = [f for f in geometry if f.measure in keys]
    chosen = narrow or geometry
    return Routed("geometry", chosen) if chosen else None
