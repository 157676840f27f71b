"""Descriptor sets: the FISWG face set and the checks that refuse broken sets."""

from __future__ import annotations

import json

import pytest

from core.errors import DataError
from core.text.descriptors import DescriptorSet, load_descriptors

FISWG_COMPONENTS = ["skin", "face/head outline", "face/head composition", "hair", "forehead", "eyebrows", "eyes", "cheeks", "nose", "ears",
                    "mouth", "chin/jawline", "neck", "facial hair", "facial lines", "scars", "facial marks", "alterations"]  # fmt: skip


def test_the_face_set_covers_the_fiswg_components_with_about_120_descriptors():
    d = load_descriptors()
    assert [c for c in dict.fromkeys(g.component for g in d.groups)] == FISWG_COMPONENTS
    assert 110 <= len(d) <= 150
    assert all(len(g.alternatives) >= 2 for g in d.groups)
    assert len(d.group_ids) == len(d.descriptors) == len(d.prompts) == len(d)
    assert d.prompts[0] == d.template.format(d.descriptors[0]) and "{}" not in d.prompts[0]
    assert len(set(d.descriptors)) == len(d)


def _set(*groups: list[str], template: str = "a face with {}.") -> dict:
    return {
        "name": "t",
        "template": template,
        "components": [{"component": "eyes", "groups": [{"group": f"g{i}", "alternatives": g} for i, g in enumerate(groups)]}],
    }


@pytest.mark.parametrize(
    "data,message",
    [
        (_set(["round eyes", "  "]), "descriptor 2 is empty"),
        (_set(["round eyes", ""]), "descriptor 2 is empty"),
        (_set(["round eyes", "wide-set eyes"], ["Round  Eyes", "small eyes"]), "duplicate descriptor 'Round  Eyes'"),
        (_set(["round eyes"]), "at least two alternatives"),
        (_set(["round eyes", "small eyes"], template="a face"), "template"),
        ({"name": "t", "components": []}, "non-empty"),
    ],
)
def test_broken_sets_are_refused_with_the_place_of_the_problem(data, message, tmp_path):
    with pytest.raises(DataError, match=message):
        DescriptorSet.from_dict(data)
    path = tmp_path / "set.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"set\.json"):
        load_descriptors(path)


def test_digest_changes_with_the_words_and_their_grouping():
    a = DescriptorSet.from_dict(_set(["round eyes", "small eyes"], ["thin lips", "full lips"]))
    b = DescriptorSet.from_dict(_set(["round eyes", "small eyes", "thin lips", "full lips"]))
    assert a.descriptors == b.descriptors and a.digest() != b.digest()
    assert a.group_ids == [0, 0, 1, 1]
    with pytest.raises(DataError, match="not found"):
        load_descriptors("/nonexistent/set.json")
