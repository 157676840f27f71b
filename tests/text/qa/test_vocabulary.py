"""The words for parts of the face and measures (``core.text.qa.vocabulary``)."""

from __future__ import annotations

from core.faces.geometry import MEASURES_5, MEASURES_68
from core.faces.regions import REGIONS
from core.text.qa.vocabulary import MEASURE_PARTS, PARTS, measures_in, part, part_of_region, parts_in


def _names(text: str) -> list[str]:
    return [p.name for p in parts_in(text)]


def test_questions_name_their_parts_in_order():
    assert _names("Do the noses differ?") == ["nose"]
    assert _names("How far apart are the eyes?") == ["eyes"]
    assert _names("Do the eyebrows differ?") == ["eyebrows"]  # not the eyes
    assert _names("Are the eye brows alike?") == ["eyebrows"]
    assert _names("Compare the lips and the left eye") == ["mouth", "eyes"]
    assert _names("What about the cheekbones, the chin and the forehead?") == ["cheeks", "chin", "forehead"]
    assert _names("Is the face shape the same?") == ["face shape"]
    assert _names("Do their ears or hair matter?") == ["ears", "hair"]
    for q in ("How sure is it?", "Why not a match?", "Are they the same person?", "Which facial features do they share?",
              "What does the CAM map say about the second face?", "What's the weather in Paris?"):  # fmt: skip
        assert parts_in(q) == [], q


def test_measure_words_narrow_a_part():
    assert measures_in("How wide is the nose?") & set(part("nose").measures) == {"nose_width"}
    assert measures_in("Are the eyes far apart?") & set(part("eyes").measures) == {"eye_spacing"}
    assert measures_in("Are the eyes wide-set?") & set(part("eyes").measures) == {"eye_spacing"}
    assert measures_in("How big are the eyes?") & set(part("eyes").measures) == {"eye_size"}
    assert measures_in("Do the noses differ?") == set()


def test_every_region_and_measure_has_its_part():
    """A new region or measure without words would be unreachable by name."""
    for region in REGIONS:
        p = part_of_region(region)
        assert p in PARTS and region in p.regions, region
    assert part_of_region("other").name == "rest"
    assert set(MEASURE_PARTS) == set(MEASURES_68) | set(MEASURES_5)
    for key, name in MEASURE_PARTS.items():
        assert key in part(name).measures
    odd = part_of_region("left_ear", "left ear")  # a row this vocabulary does not know yet
    assert odd.words == "the left ear" and odd.regions == ("left_ear",)
