"""Mining atomic descriptors from chest X-ray reports."""

from __future__ import annotations

import pytest

from core.models.cxr import RADIOLOGY
from core.text import reports as R
from core.text.descriptors import load_descriptors


def test_sentences_drop_anonymisation_and_stray_periods():
    text = "Chest radiographs XXXX. The lungs are clear.. No acute bone abnormality.."
    assert R.sentences(text) == ["Chest radiographs", "The lungs are clear", "No acute bone abnormality"]


def test_a_negated_list_is_distributed():
    got = R.atomic("The lungs are normally inflated without evidence of focal airspace disease, pleural effusion, or pneumothorax")
    assert ("the lungs are normally inflated", False) in got
    assert {("focal airspace disease", True), ("pleural effusion", True), ("pneumothorax", True)} <= set(got)


def test_negation_ends_at_but_and_predicates_are_shared():
    got = R.atomic("No pneumothorax but a small right pleural effusion is present")
    assert ("pneumothorax", True) in got and ("a small right pleural effusion", False) in got
    shared = R.atomic("The heart size and pulmonary vascularity are within normal limits")
    assert ("the heart size are within normal limits", False) in shared


def test_vocabulary_concepts_keep_the_polarity():
    m = R.mine_report(R.Report("1", "Small right pleural effusion with blunting of the costophrenic angle. No pneumothorax.", ""))
    assert m.effusion and {"small pleural effusion", "right-sided pleural effusion", "blunted costophrenic angle", "no pneumothorax"} <= set(
        m.concepts
    )
    assert "no pleural effusion" not in m.concepts
    neg = R.mine_report(R.Report("2", "", "No pleural effusion or pneumothorax."))
    assert not neg.effusion and neg.concepts == ["no pleural effusion", "no pneumothorax"]


def test_every_rule_names_a_vocabulary_descriptor():
    assert set(R.VOCABULARY_RULES) <= set(load_descriptors(RADIOLOGY).descriptors)


def test_an_extractor_replaces_the_rules():
    m = R.mine_report(R.Report("3", "anything", ""), extractor=lambda text: ["No pleural effusion", "Enlarged cardiac silhouette"])
    assert m.atomic == ["no pleural effusion", "enlarged cardiac silhouette"] and "enlarged cardiac silhouette" in m.concepts


def test_the_shipped_corpus_is_mined():
    try:
        path = R.corpus_path()
    except Exception as e:  # torchxrayvision is a requirement; say why if it is missing
        pytest.fail(f"report corpus missing: {e}")
    mined = R.mine_reports(R.read_reports(path, limit=200))
    assert len(mined) == 200
    assert sum("no pneumothorax" in m.concepts for m in mined) > 50  # the commonest finding of these reports
    assert all(not a.isdigit() for m in mined for a in m.atomic)
