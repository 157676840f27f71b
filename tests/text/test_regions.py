import json

import numpy as np
import pytest

from core.faces.align import template_for_size
from core.faces.regions import REGIONS, region_masks
from core.text.regions import RegionRow, region_sentences, region_table, table_markdown
from core.types import AlignedFace


@pytest.fixture(scope="module")
def masks():
    size = 112
    face = AlignedFace(
        np.zeros((size, size, 3), np.uint8), template_for_size(size).astype(np.float32), np.zeros(4), np.hstack([np.eye(2), np.zeros((2, 1))])
    )
    return region_masks(face, landmarks="5")


def _row(rows, name) -> RegionRow:
    return next(r for r in rows if r.region == name)


def _nose_plus_mouth_minus(masks):
    sal = np.zeros(masks.labels.shape, np.float32)
    sal[masks.mask("nose")] = 1.0
    sal[masks.mask("mouth")] = -1.0
    return sal


def test_table_shares(masks):
    rows = region_table(_nose_plus_mouth_minus(masks), masks)
    assert [r.region for r in rows] == [*REGIONS, "other"] and rows[-1].label == "rest of the image"
    assert _row(rows, "nose").similar == pytest.approx(1.0) and _row(rows, "mouth").dissimilar == pytest.approx(1.0)
    assert _row(rows, "nose").dissimilar == 0 and _row(rows, "mouth").similar == 0
    assert _row(rows, "nose").mean == pytest.approx(1.0) and _row(rows, "mouth").mean == pytest.approx(-1.0)
    for attr in ("area", "similar", "dissimilar"):
        assert sum(getattr(r, attr) for r in rows) == pytest.approx(1.0)
    assert _row(rows, "nose").area == pytest.approx(masks.mask("nose").mean())
    json.dumps([r.to_dict() for r in rows])


def test_table_weights_by_value_and_counts_the_rest_of_the_image(masks):
    sal = np.zeros(masks.labels.shape)
    sal[masks.mask("nose")] = 1.0
    sal[masks.mask("right_eye")] = 3.0
    sal[masks.mask("other")] = -0.5
    sal[masks.mask("chin")] = 0.5  # half positive, half negative
    sal[np.nonzero(masks.mask("chin"))[0][::2], np.nonzero(masks.mask("chin"))[1][::2]] = -0.5
    rows = region_table(sal, masks)
    n_nose, n_eye = masks.mask("nose").sum(), masks.mask("right_eye").sum()
    chin = masks.mask("chin").sum()
    pos_chin = 0.5 * (chin - len(range(0, chin, 2)))
    total = n_nose + 3 * n_eye + pos_chin
    assert _row(rows, "right_eye").similar == pytest.approx(3 * n_eye / total)
    assert _row(rows, "nose").similar == pytest.approx(n_nose / total)
    assert _row(rows, "other").dissimilar > 0.9 and _row(rows, "chin").dissimilar > 0
    assert _row(rows, "left_eye").similar == 0


def test_sentences_name_the_regions(masks):
    rows = region_table(_nose_plus_mouth_minus(masks), masks)
    together, apart = region_sentences(rows)
    assert "nose" in together and "together" in together and "100 %" in together
    assert "mouth" in apart and "apart" in apart and "100 %" in apart
    assert "eye" not in together + apart and "0 %" not in (together + apart).replace("100 %", "")
    text = " ".join(region_sentences(rows, method_label="Grad-CAM"))
    assert text.startswith("According to Grad-CAM, the nose")


def test_sentences_rank_group_pairs_and_skip_zero(masks):
    sal = np.zeros(masks.labels.shape)
    sal[masks.mask("right_eye")] = 3.0 / masks.mask("right_eye").sum()
    sal[masks.mask("left_eye")] = 2.0 / masks.mask("left_eye").sum()
    sal[masks.mask("nose")] = 1.0 / masks.mask("nose").sum()
    sal[masks.mask("chin")] = 0.004 / masks.mask("chin").sum()  # rounds to 0 %: never named
    rows = region_table(sal, masks)
    together, apart = region_sentences(rows, top=4)
    assert "eyes bring the faces together most" in together
    assert together.index("right eye 50 %") < together.index("left eye 33 %") < together.index("nose (17 %)")
    assert "chin" not in together
    assert "no negative" in apart and "no region pulls the faces apart" in apart.lower()
    assert "nose" not in region_sentences(rows, top=2)[0]
    # one region only with top=1
    only = region_sentences(rows, top=1)[0]
    assert "right eye" in only and "left eye" not in only


def test_no_evidence(masks):
    rows = region_table(np.zeros(masks.labels.shape), masks)
    assert all(r.similar == 0 and r.dissimilar == 0 for r in rows)
    (s,) = region_sentences(rows)
    assert "no evidence" in s
    (s,) = region_sentences(region_table(np.zeros(masks.labels.shape), masks, signed=False), signed=False)
    assert "no evidence" in s and "relevance" in s
    # only negative evidence: said plainly
    sal = -_nose_plus_mouth_minus(masks).clip(0, None)
    together, apart = region_sentences(region_table(sal, masks))
    assert "no positive" in together and "nose" in apart


def test_rest_of_the_image_is_named_when_it_leads(masks):
    sal = np.where(masks.mask("other"), 1.0, 0.0)
    sal[masks.mask("nose")] = 0.5
    together = region_sentences(region_table(sal, masks))[0]
    assert together.startswith("The rest of the image brings the faces together most") and "outside the named facial regions" in together


def test_unsigned_relevance(masks):
    sal = np.zeros(masks.labels.shape)
    sal[masks.mask("mouth")] = 0.8
    sal[masks.mask("forehead")] = 0.1
    rows = region_table(sal, masks, signed=False)
    assert all(r.dissimilar == 0 for r in rows)
    assert sum(r.similar for r in rows) == pytest.approx(1.0)
    (s,) = region_sentences(rows, signed=False)
    assert s.startswith("The model relied most on the mouth") and "relevance" in s and "apart" not in s
    md = table_markdown(rows, signed=False)
    assert "relevance %" in md and "dissimilar" not in md


def test_size_mismatch_and_bad_values(masks):
    with pytest.raises(ValueError, match="resize"):
        region_table(np.zeros((56, 56)), masks)
    with pytest.raises(ValueError, match="2-D"):
        region_table(np.zeros((112, 112, 3)), masks)
    sal = _nose_plus_mouth_minus(masks)
    sal[0, 0] = np.nan
    assert _row(region_table(sal, masks), "nose").similar == pytest.approx(1.0)


def test_table_markdown(masks):
    md = table_markdown(region_table(_nose_plus_mouth_minus(masks), masks))
    lines = md.splitlines()
    assert lines[0] == "| region | similar % | dissimilar % | mean |" and len(lines) == 2 + len(REGIONS) + 1
    assert "| nose | 100 | 0 | +1.000 |" in lines and "| mouth | 0 | 100 | -1.000 |" in lines
    assert lines[-1].startswith("| rest of the image |")
