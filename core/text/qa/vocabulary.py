"""The words a question uses for a facial region or a measure, and what they point to: the
rows of the explainability table (``core.faces.regions``), the measured proportions
(``core.faces.geometry``) and the descriptor components (FISWG) that speak of that part.

"Do the noses differ?" names the nose: its table rows (``nose``), its measure
(``nose_width``) and the descriptors of the nose component, and nothing about the mouth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The table row of pixels in no facial region, and how it is worded.
OTHER = "other"
OTHER_WORDS = "the rest of the image (hair, ears, the face outline or the background)"


@dataclass(frozen=True)
class Part:
    """A part of the face a question can name.

    ``regions``: its rows in the explainability table (``"other"`` for a part that has no
    row of its own); ``measures``: its keys in the measured proportions; ``outside``: the
    maps count it in the rest of the image, with hair, ears and the background.
    """

    name: str
    words: str  # "the nose"
    plural: bool
    noun: str  # plural noun for a question: "noses"
    pattern: re.Pattern[str]
    regions: tuple[str, ...] = ()
    measures: tuple[str, ...] = ()
    outside: bool = False


def _p(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_FACE_SHAPE = _p(r"\bface (shape|length)s?\b|\bfacial index\b|\bshape of (the|their) faces?\b|\b(long|round|narrow|wide) faces?\b")
_REST = _p(r"\bbackgrounds?\b|\brest of the image\b|\boutside the (named )?facial regions\b")

#: In the order they are looked for; a matched span is not read again ("eyebrow" is not "eye").
PARTS: tuple[Part, ...] = (
    Part("eyebrows", "the eyebrows", True, "eyebrows", _p(r"\beye ?brows?\b|\bbrows?\b"), ("left_eyebrow", "right_eyebrow")),
    Part("eyes", "the eyes", True, "eyes", _p(r"\beyes?\b|\bocular\b|\bunder-eye\b"), ("left_eye", "right_eye"), ("eye_spacing", "eye_size")),
    Part("nose", "the nose", False, "noses", _p(r"\bnoses?\b|\bnostrils?\b|\bnasal\b"), ("nose",), ("nose_width",)),
    Part("mouth", "the mouth", False, "mouths", _p(r"\bmouths?\b|\blips?\b"), ("mouth",), ("mouth_width", "mouth_to_eyes")),
    Part("cheeks", "the cheeks", True, "cheeks", _p(r"\bcheeks?\b|\bcheek ?bones?\b"), ("left_cheek", "right_cheek")),
    Part("chin", "the chin", False, "chins", _p(r"\bchins?\b"), ("chin",)),
    Part("forehead", "the forehead", False, "foreheads", _p(r"\bforeheads?\b"), ("forehead",)),
    Part("face shape", "the shape of the face", False, "face shapes", _FACE_SHAPE, (), ("face_proportions",)),
    Part("jaw", "the jaw", False, "jaws", _p(r"\bjaw(line)?s?\b"), (OTHER,), outside=True),
    Part("ears", "the ears", True, "ears", _p(r"\bears?\b|\bear ?lobes?\b"), (OTHER,), outside=True),
    Part("hair", "the hair", False, "hair", _p(r"\bhair\b|\bbeards?\b|\bmous?taches?\b|\bsideburns?\b"), (OTHER,), outside=True),
    Part("neck", "the neck", False, "necks", _p(r"\bnecks?\b"), (OTHER,), outside=True),
    Part("rest", OTHER_WORDS, False, "backgrounds", _REST, (OTHER,)),
)
_BY_NAME = {p.name: p for p in PARTS}
_BY_REGION = {r: p for p in PARTS if not p.outside for r in p.regions}

#: The part each measured proportion describes (``core.faces.geometry``'s keys).
MEASURE_PARTS = {"eye_spacing": "eyes", "eye_size": "eyes", "nose_width": "nose", "mouth_width": "mouth", "mouth_to_eyes": "mouth",
                 "face_proportions": "face shape"}  # fmt: skip

#: Words of a measure that narrow a part's measures ("How WIDE is the nose?") -> measure keys.
_MEASURE_WORDS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (_p(r"\bwid(e|th|ths|er)\b|\bnarrow(er)?\b|\bbroad(er)?\b"), ("nose_width", "mouth_width", "mouth_to_eyes")),
    (_p(r"\bspac(ing|ed)\b|\bfar apart\b|\b(close|wide)[- ]set\b|\bclose together\b|\bdistance\b"), ("eye_spacing",)),
    (_p(r"\bsizes?\b|\bbig(ger)?\b|\bsmall(er)?\b|\blarge(r)?\b"), ("eye_size",)),
    (_p(r"\blength\b|\blong(er)?\b|\bshort(er)?\b|\bshape\b|\bindex\b"), ("face_proportions",)),
)

#: Measure nouns that ask for the measured proportions even without a part ("Which proportions differ?").
MEASURE_NOUNS = _p(r"\bproportions?\b|\bratios?\b|\bgeometry\b|\bmeasure(ment)?s?\b|\bmeasured\b|\bwidths?\b|\bspacing\b|\bsizes?\b")


def part(name: str) -> Part:
    """The part of that name (``KeyError`` for an unknown one)."""
    return _BY_NAME[name]


def part_of_region(region: str, label: str | None = None) -> Part:
    """The part a table row belongs to; a row this module does not know is a part of its own."""
    if region == OTHER:
        return _BY_NAME["rest"]
    if region in _BY_REGION:
        return _BY_REGION[region]
    words = label or region.replace("_", " ")
    return Part(region, f"the {words}", words.endswith("s"), words, _p(rf"\b{re.escape(words)}\b"), (region,))


def parts_in(text: str) -> list[Part]:
    """The parts ``text`` names, in the order it names them, each once."""
    found: list[tuple[int, Part]] = []
    taken: list[tuple[int, int]] = []
    for p in PARTS:
        for m in p.pattern.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), p))
    out: list[Part] = []
    for _, p in sorted(found, key=lambda t: t[0]):
        if p not in out:
            out.append(p)
    return out


def measures_in(text: str) -> set[str]:
    """The measure keys the words of ``text`` point to (empty: none named)."""
    return {k for pattern, keys in _MEASURE_WORDS if pattern.search(text) for k in keys}
