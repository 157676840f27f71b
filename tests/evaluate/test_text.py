"""ROUGE-L and METEOR of predicted descriptors against a report's."""

from __future__ import annotations

import pytest

from core.evaluate import text as T


def test_identical_lists_score_one_and_disjoint_lists_zero():
    ref = ["small pleural effusion", "blunted costophrenic angle"]
    assert T.rouge_l(ref, ref) == pytest.approx(1.0)
    assert T.meteor(ref, ref) > 0.95
    assert T.rouge_l(["normal heart size"], ref) == 0.0 and T.meteor(["normal heart size"], ref) == 0.0


def test_order_and_stems_matter_as_in_the_metrics():
    ref = ["small pleural effusion", "blunted costophrenic angle"]
    swapped = ref[::-1]
    assert T.rouge_l(swapped, ref) < 1.0  # a longest common subsequence follows the order
    assert T.meteor(["small pleural effusions"], ["small pleural effusion"]) > T.meteor(["small pleural opacity"], ["small pleural effusion"])


def test_mean_scores_say_which_meteor_stages_ran():
    s = T.text_scores([(["no pneumothorax"], ["no pneumothorax"]), (["clear lungs"], ["no pneumothorax"])])
    assert s.n == 2 and 0 < s.rouge_l < 1 and "no WordNet" in s.meteor_stages
    with pytest.raises(ValueError):
        T.text_scores([])
