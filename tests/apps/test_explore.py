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
