"""The Explore tab's handlers: run a pairs CSV, filter and sort the table, open a pair's maps."""

from __future__ import annotations

import pytest

from apps.explore import explore_table, explore_view, open_explore, run_explore, selected_index

from ..conftest import DEEPFACE

# the CSV sits in the images' folder's stead: names are relative to `images`
PAIRS = "file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg5.jpg,missing.jpg,1\n"


@pytest.fixture(scope="module")
def explored(runner, tmp_path_factory):
    if not DEEPFACE.is_dir():
        pytest.skip(f"real test images not found at {DEEPFACE}")
    tmp = tmp_path_factory.mktemp("explore")
    (tmp / "pairs.csv").write_text(PAIRS)
    seen = []
    out = run_explore(runner, str(tmp / "pairs.csv"), ["cam"], "fast", 0, tmp / "out", lambda f, m: seen.append(f), images=str(DEEPFACE))
    return out, seen


@pytest.mark.needs_data
def test_run_explore_gives_the_table_and_the_summary(explored):
    out, seen = explored
    assert out["ok"] and "1 could not be compared" in out["message"] and seen[-1] == 1.0
    assert "**3** pairs" in out["summary"] and "accuracy: **100.0%**" in out["summary"] and "mean C-Score" in out["summary"]
    table = out["table"]
    assert table["headers"][:3] == ["#", "file_x", "file_y"] and table["headers"][-1] == "cam (s)" and table["indices"] == [0, 1, 2]
    col = table["headers"].index("decision")
    assert [line[col] for line in table["values"]] == ["same", "different", None]


@pytest.mark.needs_data
def test_filter_sort_and_click(explored):
    out, _ = explored
    rows, methods = out["rows"], out["methods"]
    shown = explore_table(rows, methods, decision="different people")
    assert shown["ok"] and shown["table"]["indices"] == [1] and shown["message"] == "1 of 3 pairs shown."
    shown = explore_table(rows, methods, correct="correct", sort_by="similarity", descending=True)
    assert shown["table"]["indices"] == [0, 1]
    shown = explore_table(rows, methods, sort_by="C-Score", min_cscore=0.5, text="img12")
    assert shown["table"]["indices"] == [1]
    assert selected_index(shown["rows"], [0, 4]) == 1 and selected_index(shown["rows"], 7) is None
    bad = explore_table(rows, methods, sort_by="nonsense")
    assert not bad["ok"] and "cannot sort by" in bad["message"] and len(bad["rows"]) == 3


@pytest.mark.needs_data
def test_explore_view_shows_the_maps_or_says_why_not(explored):
    out, _ = explored
    view = explore_view(out["out"], 0)
    assert view["ok"] and "same person" in view["verdict"].lower() and "**right**" in view["message"]
    assert view["crop_a"].shape == (112, 112, 3) and len(view["gallery"]) == 1
    image, caption = view["gallery"][0]
    assert image.shape == (112, 2 * 112 + 4, 3) and caption.startswith("CAM")
    failed = explore_view(out["out"], 2)
    assert not failed["ok"] and "could not be compared" in failed["message"] and "missing.jpg" in failed["message"]
    assert not explore_view(out["out"], 9)["ok"] and "Click a row" in explore_view(out["out"], None)["message"]
    reopened = open_explore(out["out"])
    assert reopened["ok"] and reopened["table"] == out["table"]


def test_errors_come_back_as_messages(runner, tmp_path):
    assert "Upload a pairs CSV" in run_explore(runner, None, ["cam"])["message"]
    bad = run_explore(runner, str(tmp_path / "nope.csv"), ["cam"], out_dir=tmp_path / "o")
    assert not bad["ok"] and "no such" in bad["message"]
    (tmp_path / "p.csv").write_text("file_x,file_y\nx.jpg,y.jpg\n")
    assert "unknown explanation method" in run_explore(runner, str(tmp_path / "p.csv"), ["nope"], out_dir=tmp_path / "o")["message"]
    assert not open_explore(tmp_path / "empty")["ok"] and not explore_view(tmp_path / "empty", 0)["ok"]
    assert explore_table(None)["message"] == "0 of 0 pairs shown."


@pytest.mark.needs_data
def test_an_uploaded_csv_reads_only_its_upload(runner, tmp_path):
    """Uploaded files (a CSV and photos, as Gradio stores them: each in a folder of its
    own) become one bundle; names outside it, climbing out of it or missing from it get
    the same answer, which says nothing of the server's files."""
    import shutil

    from apps.explore import run_explore_uploads

    sent = []
    for i, name in enumerate(("img5.jpg", "img10.jpg")):
        (tmp_path / f"u{i}").mkdir()
        sent.append(shutil.copy(DEEPFACE / name, tmp_path / f"u{i}" / name))
    (tmp_path / "u9").mkdir()
    csv = tmp_path / "u9" / "pairs.csv"
    csv.write_text("file_x,file_y,same\nimg5.jpg,img10.jpg,1\n/etc/passwd,img5.jpg,0\n../../u0/img5.jpg,img10.jpg,1\n"
                   "nowhere.jpg,img5.jpg,0\n/etc/no-such.jpg,img5.jpg,0\n")  # fmt: skip
    out = run_explore_uploads(runner, [str(csv), *map(str, sent)], [], "fast", 0, tmp_path / "out")
    assert out["ok"], out["message"]
    rows = out["rows"]
    assert rows[0].ok and rows[0].decision == "same"
    errors = [r.error for r in rows[1:]]
    assert errors == [f"{n}: not in your upload" for n in ("/etc/passwd", "../../u0/img5.jpg", "nowhere.jpg", "/etc/no-such.jpg")]
    assert str(tmp_path) not in out["summary"] + "".join(errors)
    assert not [p for p in (tmp_path / "out").parent.glob("upload-*")]  # the unpacked upload is removed after the run


@pytest.mark.needs_data
def test_a_zip_upload_keeps_its_folders(runner, tmp_path):
    import zipfile

    from apps.explore import run_explore_uploads

    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("batch/pairs.csv", "file_x,file_y,same\nann/a.jpg,ann/b.jpg,1\nann/a.jpg,bob/c.jpg,0\n")
        z.write(DEEPFACE / "img5.jpg", "batch/ann/a.jpg")
        z.write(DEEPFACE / "img10.jpg", "batch/ann/b.jpg")
        z.write(DEEPFACE / "img12.jpg", "batch/bob/c.jpg")
    out = run_explore_uploads(runner, [str(archive)], [], "fast", 0, tmp_path / "out")
    assert out["ok"] and [r.decision for r in out["rows"]] == ["same", "different"] and out["summary_data"]["accuracy"] == 1.0
    bad = tmp_path / "slip.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../../etc/cron.d/x.csv", "file_x,file_y\n")
    refused = run_explore_uploads(runner, [str(bad)], [], "fast", 0, tmp_path / "out2")
    assert not refused["ok"] and "points outside the archive" in refused["message"]


def test_the_summary_of_a_batch_where_nothing_was_compared_is_true():
    from apps.explore import summary_markdown
    from core.batch import BatchRow, batch_summary

    rows = [BatchRow(0, "a.jpg", "b.jpg", "same", error="a.jpg: not in your upload")]
    text = summary_markdown(batch_summary(rows))
    assert "no pair could be compared" in text and "no labelled pair" not in text and "no calibration" not in text


def _many(n: int = 230) -> list:
    """``n`` rows as a batch gives them: every tenth pair failed, the others with a decision,
    a label and a C-Score that is distinct per pair and not in pair order."""
    from core.batch import DIFFERENT, SAME, BatchRow

    rows = []
    for i in range(n):
        if i % 10 == 9:
            rows.append(BatchRow(i, f"x{i}.jpg", f"y{i}.jpg", SAME, error=f"x{i}.jpg: no face found"))
            continue
        label, decision = (SAME if i % 2 == 0 else DIFFERENT), (SAME if i % 3 == 0 else DIFFERENT)
        rows.append(BatchRow(i, f"x{i}.jpg", f"y{i}.jpg", label, 0.5, 0.3, decision, label == decision, ((i * 37) % n) / n, 0.1))
    return rows


def test_the_table_pages_through_thousands_of_rows():
    from apps.explore import PAGE_SIZE

    rows = _many()
    assert PAGE_SIZE == 50
    first = explore_table(rows)
    assert first["ok"] and first["page"] == 0 and first["pages"] == 5 and len(first["rows"]) == 230
    assert first["table"]["indices"] == list(range(50)) and [line[0] for line in first["table"]["values"]] == list(range(50))
    assert first["message"] == "rows 1-50 of 230 shown (page 1 of 5); 230 of 230 pairs after the filters"
    second = explore_table(rows, page=1)
    assert second["table"]["indices"] == list(range(50, 100)) and second["message"].startswith("rows 51-100 of 230 shown (page 2 of 5)")
    last = explore_table(rows, page=4)  # the last page holds what is left
    assert last["table"]["indices"] == list(range(200, 230)) and len(last["table"]["values"]) == 30
    assert last["message"].startswith("rows 201-230 of 230 shown (page 5 of 5)")
    # a page past either end is the last or the first one
    assert explore_table(rows, page=99)["page"] == 4 and explore_table(rows, page=99)["table"] == last["table"]
    assert explore_table(rows, page=-3)["page"] == 0 and explore_table(rows, page=-3)["table"] == first["table"]
    assert explore_table(rows, page=None)["page"] == 0  # an empty page box
    # another page size; one page when everything fits, with the short message as before
    assert explore_table(rows, page=2, page_size=100)["table"]["indices"] == list(range(200, 230))
    assert explore_table(rows, page=2, page_size=100)["pages"] == 3
    small = explore_table(rows[:3], page=5)
    assert small["page"] == 0 and small["pages"] == 1 and small["message"] == "3 of 3 pairs shown." and small["table"]["indices"] == [0, 1, 2]
    empty = explore_table(rows, text="no such file")
    assert empty["pages"] == 1 and empty["table"]["values"] == [] and empty["message"] == "0 of 230 pairs shown."


def test_filters_and_sort_then_pages_and_the_click_on_a_line_of_a_page():
    rows = _many()
    # independently of core.batch: same-person decisions, highest C-Score first
    expected = [r.index for r in sorted((r for r in rows if r.decision == "same"), key=lambda r: -r.c_score)]
    assert len(expected) == 69  # 77 multiples of 3 below 230, less the 8 failed ones (i % 10 == 9)
    out = explore_table(rows, None, decision="same person", sort_by="c_score", descending=True, page=1)
    assert out["page"] == 1 and out["pages"] == 2 and [r.index for r in out["rows"]] == expected
    assert out["table"]["indices"] == expected[50:69]
    assert out["message"] == "rows 51-69 of 69 shown (page 2 of 2); 69 of 230 pairs after the filters"
    # line k of page p is pair expected[50 p + k], from the whole filtered list or from the page's own rows
    for page, line in ((0, 0), (0, 49), (1, 0), (1, 7), (1, 18)):
        assert selected_index(out["rows"], [line, 3], page) == expected[50 * page + line]
    page_rows = out["rows"][50:]
    assert selected_index(page_rows, 7) == expected[57] == out["table"]["indices"][7]
    assert selected_index(out["rows"], [19, 0], 1) is None  # past the end of the last (partial) page
    assert selected_index(out["rows"], 50, 0) is None and selected_index(out["rows"], -1, 1) is None  # not a line of that page
    assert selected_index(out["rows"], 2, 9) == expected[52]  # the page clamped as the table clamps it


def test_a_saved_batch_of_many_pairs_opens_on_its_first_page(tmp_path):
    from core.batch import write_rows

    rows = _many()
    write_rows(tmp_path / "pairs.csv", rows, [])
    out = open_explore(tmp_path)
    assert out["ok"] and len(out["rows"]) == 230 and out["page"] == 0 and out["pages"] == 5
    assert out["table"]["indices"] == list(range(50)) and out["page_message"].startswith("rows 1-50 of 230 shown")
    # a failed pair of a later page opens to its own title and error
    shown = explore_table(out["rows"], out["methods"], page=3)
    view = explore_view(tmp_path, selected_index(shown["rows"], [29, 0], shown["page"]))
    assert not view["ok"] and view["title"] == "Pair 179: x179.jpg vs y179.jpg" and "x179.jpg: no face found" in view["message"]
