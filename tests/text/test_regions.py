import json

import numpy as np
import pytest

from core.faces.align import template_for_size
from core.faces.regions import REGIONS, region_masks
from core.text.regions import LEAD_MIN_SHARE, RegionRow, region_sentences, region_table, table_markdown
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


def _x(density: float) -> str:
    """A density as the sentences write it: one decimal below 10, whole above."""
    return f"{density:.1f}x" if density < 9.95 else f"{density:.0f}x"


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
    assert together.index("right eye 50 %") < together.index("left eye 33 %") < together.index("the nose (17 % on")
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


def test_rest_of_the_image_never_leads_but_comes_last_as_context(masks):
    sal = np.where(masks.mask("other"), 1.0, 0.0)  # most of the evidence lies outside the face's regions
    sal[masks.mask("nose")] = 0.5
    rows = region_table(sal, masks)
    assert max(rows, key=lambda r: r.similar).region == "other"  # the bucket holds the largest share ...
    together = region_sentences(rows, method_label="X-Map II")[0]
    assert together.startswith("According to X-Map II, the nose brings the faces together most")  # ... but never leads
    assert together.index("the nose") < together.index("the rest of the image") and "hair, ears" in together
    other = _row(rows, "other")
    assert f"holds {round(100 * other.similar)} % on {round(100 * other.area)} % of the crop ({_x(other.density)})" in together
    # only the bucket has evidence: said plainly, still not opening with it
    alone = region_sentences(region_table(np.where(masks.mask("other"), 1.0, 0.0), masks))[0]
    assert alone.startswith("None of the similar evidence lies in a facial region: the rest of the image") and "100 %" in alone
    thin = np.where(masks.mask("other"), 1.0, 0.0)
    thin[masks.mask("forehead")] = 0.1  # 1-2 % of the evidence: too thin to rank, said as the most there is
    words = region_sentences(region_table(thin, masks))[0]
    assert words.startswith("No facial region holds 2 % of the similar evidence: the most lies in the forehead (")
    assert words.index("the forehead") < words.index("the rest of the image")


def test_density_is_evidence_share_over_area_share(masks):
    sal = np.zeros(masks.labels.shape)
    sal[masks.mask("forehead")] = 1.0
    sal[masks.mask("mouth")] = -2.0
    sal[masks.mask("chin")] = -1.0
    rows = region_table(sal, masks)
    n = masks.labels.size
    fh, mo, ch = (masks.mask(k).sum() for k in ("forehead", "mouth", "chin"))
    assert _row(rows, "forehead").density == pytest.approx(1.0 / (fh / n))  # all the similar evidence on its area
    neg = 2.0 * mo + ch
    assert _row(rows, "mouth").dissimilar_density == pytest.approx((2.0 * mo / neg) / (mo / n))
    assert _row(rows, "chin").dissimilar_density == pytest.approx((ch / neg) / (ch / n))
    assert _row(rows, "nose").density == 0 and _row(rows, "forehead").dissimilar_density == 0
    d = _row(rows, "forehead").to_dict()
    assert d["density"] == pytest.approx(rows[0].density) and isinstance(d["density"], float) and "dissimilar_density" in d
    # a uniform map: every region holds exactly its area's share
    flat = region_table(np.ones(masks.labels.shape), masks)
    assert all(r.density == pytest.approx(1.0) for r in flat if r.area > 0)


def test_small_dense_region_leads_a_large_one_and_both_are_said(masks):
    """The forehead holds the largest share; the eyes hold less on a third of its area, so
    they lead, with their share, their area and the ratio; the forehead is still named."""
    eyes = masks.mask("left_eye") | masks.mask("right_eye")
    sal = np.zeros(masks.labels.shape)
    sal[masks.mask("forehead")] = 1.0
    sal[eyes] = 2.0
    rows = region_table(sal, masks)
    fore, le, re = _row(rows, "forehead"), _row(rows, "left_eye"), _row(rows, "right_eye")
    assert fore.similar > le.similar + re.similar and le.density > fore.density
    together = region_sentences(rows, method_label="Grad-CAM")[0]
    assert together.startswith("According to Grad-CAM, the eyes bring the faces together most for their size: ")
    share, area = le.similar + re.similar, le.area + re.area
    assert f"{round(100 * share)} % of the similar evidence (" in together
    assert f"on {round(100 * area)} % of the face crop ({_x(share / area)} their area)" in together
    assert f"the largest share lies in the forehead ({round(100 * fore.similar)} % on {round(100 * fore.area)} %, {_x(fore.density)})" in together
    assert "rest of the image" not in together  # no evidence there: not mentioned


def test_a_sliver_of_evidence_is_not_ranked(masks):
    """The left eye is the densest region but holds under LEAD_MIN_SHARE of the evidence: it
    is not named; the nose, a little less dense with a real share, leads."""
    sal = np.ones(masks.labels.shape)  # evidence everywhere, as dense as its area
    sal[masks.mask("nose")] = 1.2
    sal[masks.mask("left_eye")] = 1.3
    rows = region_table(sal, masks)
    eye, nose = _row(rows, "left_eye"), _row(rows, "nose")
    assert eye.density > nose.density > 1 and eye.similar < LEAD_MIN_SHARE <= nose.similar
    together = region_sentences(rows, top=2)[0]
    assert together.startswith("The nose brings the faces together most for its size") and "left eye" not in together
    assert together.index("then the") < together.index("the rest of the image")
    # a denser eye with a real share leads
    sal[masks.mask("left_eye")] = 3.0
    assert region_sentences(region_table(sal, masks))[0].startswith("The left eye brings the faces together most for its size")


def test_no_sentence_opens_with_the_bucket_on_random_maps(masks):
    rng = np.random.default_rng(0)
    labels = {r.label: r.region for r in region_table(np.zeros(masks.labels.shape), masks)}
    for _ in range(20):
        sal = rng.normal(size=masks.labels.shape) + 3.0 * rng.normal() * masks.mask("other")
        for signed in (True, False):
            rows = region_table(sal, masks, signed=signed)
            for s in region_sentences(rows, method_label="M", signed=signed, top=3):
                body = s.removeprefix("According to M, ")
                assert not body.lower().startswith(("the rest of the image", "the model relied most on the rest")), s
                if "rest of the image" in s:
                    assert s.index("rest of the image") > s.index(" most "), s
                # a single region that leads is the densest of those with a real share
                lead = body.removeprefix("the model relied most on ").removeprefix("The model relied most on ")
                lead = lead.removeprefix("the ").removeprefix("The ").split(" brings ")[0].split(" pulls ")[0].split(" for ")[0]
                if lead in labels:
                    attr, dens = ("dissimilar", "dissimilar_density") if " apart " in body else ("similar", "density")
                    ranked = [r for r in rows if r.region != "other" and getattr(r, attr) >= LEAD_MIN_SHARE]
                    assert getattr(_row(rows, labels[lead]), dens) == max(getattr(r, dens) for r in ranked), s


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
    assert lines[0] == "| region | area % | similar % | x area | dissimilar % | x area | mean |" and len(lines) == 2 + len(REGIONS) + 1
    nose, mouth = masks.mask("nose").mean(), masks.mask("mouth").mean()
    assert f"| nose | {100 * nose:.1f} | 100 | {1 / nose:.1f} | 0 | 0.0 | +1.000 |" in lines
    assert f"| mouth | {100 * mouth:.1f} | 0 | 0.0 | 100 | {1 / mouth:.1f} | -1.000 |" in lines
    assert lines[-1].startswith("| rest of the image |")
