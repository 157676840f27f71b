"""The batch path: a pairs CSV or a folder -> rows, a saved folder that reopens, the table."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest

from core import Runner
from core.batch import (
    BatchRow,
    filter_rows,
    load_batch,
    pair_result,
    pair_view,
    read_batch_pairs,
    read_rows,
    rows_table,
    run_batch,
    sort_rows,
    write_rows,
)
from core.data import escape_cell
from core.errors import DataError, UnknownNameError

from .conftest import DEEPFACE

# img5 and img10 are person01, img12 is person02 (identities.csv), all small photos; the third pair's file is missing
PAIRS = "file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg5.jpg,missing.jpg,1\nimg10.jpg,img12.jpg,\n"


class Counting:
    """A runner that counts the faces it is asked to detect."""

    def __init__(self, runner):
        self._runner, self.prepared = runner, []

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def prepare(self, src, name=None, size=None):
        self.prepared.append(name)
        return self._runner.prepare(src, name, size)


@pytest.fixture(scope="module")
def batch(runner, tmp_path_factory):
    if not DEEPFACE.is_dir():
        pytest.skip(f"real test images not found at {DEEPFACE}")
    tmp = tmp_path_factory.mktemp("batch")
    (tmp / "pairs.csv").write_text(PAIRS)
    counting, kept, seen = Counting(runner), {}, []
    res = run_batch(counting, tmp / "pairs.csv", DEEPFACE, methods=("cam",), out=tmp / "out", preset="fast",
                    progress=lambda f, m: seen.append((f, m)), on_pair=lambda row, r: kept.__setitem__(row.index, r))  # fmt: skip
    return res, kept, seen, counting.prepared, tmp


@pytest.mark.needs_data
def test_rows_have_labels_decisions_and_correctness(batch, runner):
    res, _, _, _, _ = batch
    assert [r.index for r in res.rows] == [0, 1, 2, 3]
    assert [r.label for r in res.rows] == ["same", "different", "same", None]
    for r in (res.rows[0], res.rows[1], res.rows[3]):
        assert r.ok and r.threshold == pytest.approx(runner.threshold())
        assert r.decision == ("same" if r.similarity >= r.threshold else "different")
        assert 0.5 <= r.c_score <= 1.0 and set(r.runtimes) == {"cam"} and not r.method_errors
    assert res.rows[0].correct is (res.rows[0].decision == "same") and res.rows[1].correct is (res.rows[1].decision == "different")
    assert res.rows[0].decision == "same" and res.rows[1].decision == "different"  # an easy genuine and impostor pair
    assert res.rows[3].correct is None  # no label


@pytest.mark.needs_data
def test_a_failing_pair_is_a_row_with_its_error_and_the_batch_goes_on(batch):
    res, kept, seen, prepared, _ = batch
    bad = res.rows[2]
    assert not bad.ok and "missing.jpg" in bad.error and "no such file" in bad.error
    assert bad.decision is bad.correct is bad.similarity is bad.c_score is None
    assert kept[2] is None and all(kept[i] is not None for i in (0, 1, 3))
    assert sorted(prepared) == ["img10.jpg", "img12.jpg", "img5.jpg", "missing.jpg"]  # each image once, in 4 pairs
    s = res.summary()
    assert (s["n_pairs"], s["n_compared"], s["n_errors"], s["n_labelled"]) == (4, 3, 1, 2)
    assert s["accuracy"] == 1.0 and s["n_correct"] == 2 and s["mean_c_score"] == pytest.approx(np.mean([res.rows[i].c_score for i in (0, 1, 3)]))
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0 and any("pair 4/4" in m for _, m in seen)


@pytest.mark.needs_data
def test_the_saved_folder_reopens_without_recomputing(batch):
    res, kept, _, _, tmp = batch
    out = tmp / "out"
    assert sorted(p.name for p in (out / "pairs").iterdir()) == ["0.json", "1.json", "3.json"]
    again = load_batch(out)
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in res.rows]  # floats exactly
    assert again.methods == ["cam"] and again.model == "sface" and again.preset == "fast"
    for i in (0, 1, 3):
        back, orig = pair_result(out, i), kept[i]
        assert back.same == orig.same and back.similarity == orig.similarity and back.c_score == orig.c_score
        for e_back, e in zip(back.explanations, orig.explanations, strict=True):
            assert e_back.method == e.method and e_back.signed == e.signed and len(e_back.maps) == 2
            assert all(np.array_equal(a, b) for a, b in zip(e_back.maps, e.maps, strict=True))
        assert np.array_equal(back.pair.a.image, orig.pair.a.image) and np.allclose(back.pair.b.landmarks, orig.pair.b.landmarks)
    view = pair_view(out, 0)
    assert view.row.to_dict() == res.rows[0].to_dict() and "same person" in view.verdict.lower()
    (m,) = view.methods
    assert m.method == "cam" and m.image.shape == (112, 2 * 112 + 4, 3) and m.images[0].dtype == np.uint8 and "s" in m.caption
    with pytest.raises(DataError, match="no saved result for pair 2"):
        pair_view(out, 2)
    assert json.loads((out / "batch.json").read_text())["summary"]["n_errors"] == 1


@pytest.mark.needs_data
def test_folder_input_gives_every_pair(runner, tmp_path):
    for who, files in {"person01": ["img5.jpg", "img10.jpg"], "person02": ["img12.jpg"]}.items():
        (tmp_path / who).mkdir()
        for f in files:
            (tmp_path / who / f).symlink_to(DEEPFACE / f)
    (tmp_path / "person02" / "notes.txt").write_text("not a photo")
    pairs, base = read_batch_pairs(tmp_path)
    assert base == tmp_path and [(p.file_x, p.file_y, p.same) for p in pairs] == [
        ("person01/img10.jpg", "person01/img5.jpg", True),
        ("person01/img10.jpg", "person02/img12.jpg", False),
        ("person01/img5.jpg", "person02/img12.jpg", False),
    ]
    picked, _ = read_batch_pairs(tmp_path, per_label=1)
    assert [p.same for p in picked] == [True, False]
    res = run_batch(runner, tmp_path, methods=(), per_label=1)
    assert [(r.label, r.decision, r.correct) for r in res.rows] == [("same", "same", True), ("different", "different", True)]


def test_pairs_files_and_method_names_are_checked(tmp_path, runner):
    with pytest.raises(DataError, match="no such"):
        read_batch_pairs(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="file_x"):
        read_batch_pairs(tmp_path / "bad.csv")
    (tmp_path / "p.csv").write_text("file_x,file_y\nx.jpg,y.jpg\nx.jpg,z.jpg\n")
    pairs, base = read_batch_pairs(tmp_path / "p.csv", limit=1)
    assert [(p.file_x, p.file_y, p.same) for p in pairs] == [("x.jpg", "y.jpg", None)] and base == tmp_path
    with pytest.raises(UnknownNameError, match="no_such_method"):
        run_batch(runner, tmp_path / "p.csv", methods=("no_such_method",))
    (tmp_path / "out" / "pairs").mkdir(parents=True)
    (tmp_path / "out" / "pairs" / "7.json").write_text("{}")  # left by an earlier, longer run
    res = run_batch(runner, tmp_path / "p.csv", methods=(), out=tmp_path / "out")  # every image missing: rows with errors, no raise
    assert [r.error is not None for r in res.rows] == [True, True] and res.summary()["accuracy"] is None
    assert not list((tmp_path / "out" / "pairs").iterdir()) and len(load_batch(tmp_path / "out")) == 2
    res = run_batch(runner, [("x.jpg", "y.jpg", 1), ("x.jpg", "z.jpg")], images=tmp_path, methods=())
    assert [r.label for r in res.rows] == ["same", None] and "x.jpg: no such file" in res.rows[1].error


def _rows() -> list[BatchRow]:
    return [
        BatchRow(0, "a/1.jpg", "b/1.jpg", "different", 0.1, 0.5, "different", True, 0.99, 1.0, {"cam": 0.2}),
        BatchRow(1, "a/1.jpg", "a/2.jpg", "same", 0.4, 0.5, "different", False, 0.6, 1.0, {"cam": 0.3}),
        BatchRow(2, "a/2.jpg", "c/9.jpg", "same", error="c/9.jpg: no face found"),
        BatchRow(3, "c/1.jpg", "a/2.jpg", None, 0.7, 0.5, "same", None, None, 1.0, {"cam": 0.1}),
        BatchRow(4, "b/1.jpg", "b/2.jpg", "same", 0.8, 0.5, "same", True, 0.97, 1.0, {"cam": 0.5}),
    ]


def test_filter_rows():
    rows = _rows()

    def ids(**kw):
        return [r.index for r in filter_rows(rows, **kw)]

    assert ids() == [0, 1, 2, 3, 4]
    assert ids(decision="same") == [3, 4] and ids(decision="different") == [0, 1]
    assert ids(correct=True) == [0, 4] and ids(correct=False) == [1]
    assert ids(min_cscore=0.95) == [0, 4]
    assert ids(text="C/") == [2, 3] and ids(text="no face") == [2]
    assert ids(error=True) == [2] and ids(error=False) == [0, 1, 3, 4]
    assert ids(decision="same", correct=True, min_cscore=0.9) == [4]


def test_sort_rows_keeps_missing_values_last():
    rows = _rows()

    def ids(key, desc=False):
        return [r.index for r in sort_rows(rows, key, desc)]

    assert ids("similarity") == [0, 1, 3, 4, 2] and ids("similarity", True) == [4, 3, 1, 0, 2]
    assert ids("C-Score", True) == [0, 4, 1, 2, 3] and ids("c_score") == [1, 4, 0, 2, 3]
    assert ids("cam") == [3, 0, 1, 4, 2] and ids("cam (s)", True) == [4, 1, 0, 3, 2]
    assert ids("#", True) == [4, 3, 2, 1, 0] and ids("file_x") == [0, 1, 2, 4, 3]
    assert ids("correct") == [1, 0, 4, 2, 3]  # False < True; ties in pair order


def test_rows_table():
    headers, values = rows_table(_rows())
    assert headers[0] == "#" and headers[-1] == "cam (s)" and len(values) == 5 and all(len(v) == len(headers) for v in values)
    col = {h: i for i, h in enumerate(headers)}
    assert values[0][col["correct"]] == "yes" and values[1][col["correct"]] == "no" and values[3][col["correct"]] is None
    assert values[2][col["similarity"]] is None and "no face" in values[2][col["error"]]
    assert values[0][col["C-Score"]] == 0.99 and values[4][col["cam (s)"]] == 0.5
    assert not any(isinstance(v, float) and math.isnan(v) for line in values for v in line)


@pytest.mark.needs_data
def test_cli_prints_the_table_and_the_summary(tmp_path, capsys):
    from core.__main__ import main

    (tmp_path / "pairs.csv").write_text(PAIRS)
    args = ["batch", str(tmp_path / "pairs.csv"), "--images", str(DEEPFACE), "--methods", "", "--device", "cpu", "-q"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "accuracy       1.0000 (2 of 2 labelled pairs)" in text and "pairs          4 (3 compared, 1 failed)" in text
    assert "error: " in text and "missing.jpg" in text and "C-Score" in text and (tmp_path / "out" / "pairs.csv").is_file()
    (tmp_path / "gone.csv").write_text("file_x,file_y,same\na.jpg,b.jpg,1\na.jpg,c.jpg,1\nb.jpg,c.jpg,0\nc.jpg,d.jpg,\n")
    assert main(["batch", str(tmp_path / "gone.csv"), "--methods", "", "--device", "cpu", "-q", "--json", "--per-label", "1"]) == 0
    data = json.loads(capsys.readouterr().out)  # every file missing: rows with errors, still exit 0
    assert data["summary"]["n_pairs"] == 3 and data["summary"]["n_errors"] == 3 and data["summary"]["accuracy"] is None
    assert [r["label"] for r in data["rows"]] == ["same", "different", None] and "a.jpg: no such file" in data["rows"][0]["error"]
    assert main(["batch", str(tmp_path / "nope.csv"), "-q"]) == 2 and "no such" in capsys.readouterr().err


# -- hostile inputs: formula cells, repeated rows, interrupts and resumes, uploads ---------------
def _counted(runner, monkeypatch):
    """A runner sharing the session's models whose explain, prepare and embed calls are
    counted (embed: the faces embedded, the runner's own verification embeddings included)."""
    import functools

    r = Runner(device="cpu", embedder=runner.embedder, detector=runner.detector)
    calls = {"explain": 0, "prepare": 0, "embed": 0}
    for name in calls:
        real = getattr(r, name)

        @functools.wraps(real)
        def wrapper(*args, _real=real, _name=name, **kwargs):
            calls[_name] += len(args[0]) if _name == "embed" else 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(r, name, wrapper)
    return r, calls


def _outcome(rows):
    return [{k: v for k, v in r.to_dict().items() if k not in ("runtime_s", "runtimes")} for r in rows]


@pytest.mark.needs_data
def test_formula_names_are_escaped_in_pairs_csv_and_come_back_exactly(runner, tmp_path):
    import csv

    names = {"=HYPERLINK(1).jpg": "img5.jpg", "+1.jpg": "img10.jpg", "@x.jpg": "img12.jpg", "-2.jpg": "img5.jpg", "'q.jpg": "img10.jpg"}
    for link, target in names.items():
        (tmp_path / link).symlink_to(DEEPFACE / target)
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file_x", "file_y", "same"], ["=HYPERLINK(1).jpg", "+1.jpg", 1], ["@x.jpg", "-2.jpg", 0],
                                 ["'q.jpg", "=cmd|' /C calc'!A0", 1]])  # fmt: skip
    res = run_batch(runner, tmp_path / "pairs.csv", methods=(), out=tmp_path / "out")
    assert res.rows[0].ok and res.rows[1].ok and "=cmd|' /C calc'!A0: no such file" in res.rows[2].error
    more = run_batch(runner, [("\tx.jpg", "\ry.jpg")], images=tmp_path, methods=(), out=tmp_path / "out2")
    for r, out in ((res, tmp_path / "out"), (more, tmp_path / "out2")):
        assert [x.to_dict() for x in load_batch(out).rows] == [x.to_dict() for x in r.rows]  # exactly, '-prefixed names and all
    with open(tmp_path / "out" / "pairs.csv", newline="") as f:
        raw = list(csv.DictReader(f))
    assert [(d["file_x"], d["file_y"]) for d in raw] == [
        ("'=HYPERLINK(1).jpg", "'+1.jpg"),
        ("'@x.jpg", "'-2.jpg"),
        ("''q.jpg", "'=cmd|' /C calc'!A0"),
    ]
    assert raw[2]["error"] == escape_cell(res.rows[2].error) and not raw[0]["similarity"].startswith("'")  # numbers stay numbers
    with open(tmp_path / "out2" / "pairs.csv", newline="") as f:
        (d,) = list(csv.DictReader(f))
    assert d["file_x"] == "'\tx.jpg" and d["file_y"] == "'\ry.jpg"
    rows = [BatchRow(0, "a.jpg", "b.jpg", "same", -0.05, 0.5, "different", False, None, 1.0, {"cam": 0.1}, '=HYPERLINK("http://x")',
                     {"cam": "@boom"}), BatchRow(1, "c.jpg", "d.jpg", error="-1: +2")]  # fmt: skip
    write_rows(tmp_path / "rows.csv", rows, ["cam"])
    assert [r.to_dict() for r in read_rows(tmp_path / "rows.csv")[0]] == [r.to_dict() for r in rows]
    text = (tmp_path / "rows.csv").read_text()
    assert """'=HYPERLINK(""http://x"")""" in text and "'-1: +2" in text and ",-0.05," in text


@pytest.mark.needs_data
def test_repeated_identical_rows_are_run_once(runner, tmp_path, monkeypatch):
    from core.batch import _takes_embeddings

    r, calls = _counted(runner, monkeypatch)
    rows = [("img5.jpg", "img10.jpg", 1)] * 4 + [("img5.jpg", "img12.jpg", 0), ("img5.jpg", "img10.jpg", 0), ("img5.jpg", "img12.jpg", 0)]
    given = []
    res = run_batch(r, rows, images=DEEPFACE, methods=(), out=tmp_path / "out", on_pair=lambda row, pr: given.append(pr.similarity))
    assert calls["explain"] == 2 and calls["prepare"] == 3  # two distinct pairs, three photos
    assert given == [row.similarity for row in res.rows]  # every row's on_pair has its result, copies included
    assert calls["embed"] == (3 if _takes_embeddings(r) else 4)  # each photo once when the runner takes embeddings
    first, other = res.rows[0], res.rows[4]
    for row in res.rows:
        like = first if row.file_y == "img10.jpg" else other
        assert (row.similarity, row.decision, row.c_score, row.runtimes) == (like.similarity, like.decision, like.c_score, like.runtimes)
    assert [row.correct for row in res.rows] == [True] * 4 + [True, False, True]  # each row its own label
    again = load_batch(tmp_path / "out")
    assert [x.to_dict() for x in again.rows] == [x.to_dict() for x in res.rows] and again.complete
    copy = json.loads((tmp_path / "out" / "pairs" / "3.json").read_text())
    assert copy["result_of"] == 0 and copy["batch_row"]["index"] == 3  # a pointer, not a second copy of the maps
    assert pair_result(tmp_path / "out", 3).similarity == first.similarity and pair_view(tmp_path / "out", 5).row.correct is False


@pytest.mark.needs_data
@pytest.mark.skipif("embeddings" not in inspect.signature(Runner.explain).parameters, reason="needs Runner.explain(..., embeddings=...)")
def test_photos_shared_by_distinct_pairs_are_embedded_once(runner, monkeypatch):
    r, calls = _counted(runner, monkeypatch)
    run_batch(r, [("img5.jpg", "img10.jpg"), ("img5.jpg", "img12.jpg"), ("img10.jpg", "img12.jpg")], images=DEEPFACE, methods=())
    assert calls["explain"] == 3 and calls["prepare"] == 3 and calls["embed"] == 3


# a failed pair (2), a repeat of pair 0 (3) and an unlabelled pair (4)
RESUME = ("file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg5.jpg,missing.jpg,1\nimg5.jpg,img10.jpg,1\n"
          "img10.jpg,img12.jpg,\nimg12.jpg,img10.jpg,0\n")  # fmt: skip


@pytest.mark.needs_data
def test_an_interrupted_batch_keeps_its_rows_and_resumes(runner, tmp_path, monkeypatch):
    (tmp_path / "pairs.csv").write_text(RESUME)
    full = run_batch(runner, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=tmp_path / "full")

    def stop_after_3(row, res):
        if row.index == 3:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(runner, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=out, on_pair=stop_after_3)
    part = load_batch(out)
    assert [x.index for x in part.rows] == [0, 1, 2, 3] and not part.complete
    assert _outcome(part.rows) == _outcome(full.rows[:4]) and json.loads((out / "batch.json").read_text())["complete"] is False

    with pytest.raises(DataError, match=r"other settings.*methods"):
        run_batch(runner, tmp_path / "pairs.csv", DEEPFACE, methods=("cam",), out=out, resume=True)
    with pytest.raises(DataError, match=r"other settings.*the pairs"):
        run_batch(runner, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=out, resume=True, limit=5)
    with pytest.raises(DataError, match=r"other settings.*knobs"):
        run_batch(runner, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=out, resume=True, seed=3)

    raw = (out / "pairs.csv").read_bytes()
    (out / "pairs.csv").write_bytes(raw[:-5])  # as if the process died while writing row 3: that row is run again
    r, calls = _counted(runner, monkeypatch)
    seen = []
    res = run_batch(r, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=out, resume=True, batch_size=4,  # a cost knob may change
                    on_pair=lambda row, _: seen.append(row.index))  # fmt: skip
    assert calls["explain"] == 2 and seen == [3, 4, 5]  # only the rest ran (3 as a copy of the kept pair 0)
    assert _outcome(res.rows) == _outcome(full.rows) and res.complete
    done = load_batch(out)
    assert done.complete and _outcome(done.rows) == _outcome(full.rows) and [x.index for x in done.rows] == list(range(6))
    assert pair_result(out, 3).similarity == full.rows[0].similarity
    assert json.loads((out / "batch.json").read_text())["summary"] == json.loads((tmp_path / "full" / "batch.json").read_text())["summary"]
    r, calls = _counted(runner, monkeypatch)
    assert _outcome(run_batch(r, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=out, resume=True).rows) == _outcome(full.rows)
    assert calls["explain"] == 0  # a complete batch resumes to itself


@pytest.mark.needs_data
def test_a_cancelled_runner_leaves_a_valid_pairs_csv(runner, tmp_path, monkeypatch):
    class Stop(BaseException):  # as core.cancel.Cancelled: not an Exception, ends the whole batch
        pass

    r, _ = _counted(runner, monkeypatch)
    real, n = r.explain, []

    def explain(*args, **kwargs):
        n.append(1)
        if len(n) == 3:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(r, "explain", explain)
    (tmp_path / "pairs.csv").write_text(RESUME)
    with pytest.raises(Stop):
        run_batch(r, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=tmp_path / "out")
    rows = load_batch(tmp_path / "out").rows
    assert [x.index for x in rows] == [0, 1, 2, 3] and rows[2].error and rows[3].similarity == rows[0].similarity
    n.clear()
    n.extend([1, 1])  # stop at the very first pair: a header-only pairs.csv, which reopens (no rows) and resumes
    with pytest.raises(Stop):
        run_batch(r, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=tmp_path / "early")
    early = load_batch(tmp_path / "early")
    assert early.rows == [] and not early.complete
    assert len(run_batch(runner, tmp_path / "pairs.csv", DEEPFACE, methods=(), out=tmp_path / "early", resume=True)) == 6


@pytest.mark.needs_data
def test_an_upload_folder_confines_the_photos(runner, tmp_path):
    import shutil

    up = tmp_path / "upload"
    (up / "photos").mkdir(parents=True)
    for f in ("img5.jpg", "img10.jpg"):
        shutil.copy(DEEPFACE / f, up / "photos" / f)
    shutil.copy(DEEPFACE / "img12.jpg", tmp_path / "x.jpg")  # outside the upload, next to it
    (up / "photos" / "out.jpg").symlink_to(DEEPFACE / "img12.jpg")  # a symlink out
    (up / "photos" / "in.jpg").symlink_to(up / "photos" / "img5.jpg")  # a symlink within: fine
    bad = ["/etc/passwd", "../../x.jpg", "../x.jpg", "out.jpg", "missing.jpg", str(up / "photos" / "img5.jpg"), "/etc", "."]
    lines = ["file_x,file_y,same", "img5.jpg,img10.jpg,1", "in.jpg,img10.jpg,1", *(f"{b},img5.jpg,1" for b in bad)]
    (up / "photos" / "pairs.csv").write_text("\n".join(lines) + "\n")
    res = run_batch(runner, up / "photos" / "pairs.csv", methods=(), root=up, out=tmp_path / "out")
    assert res.rows[0].ok and res.rows[1].ok and res.rows[1].similarity == res.rows[0].similarity
    assert [r.error for r in res.rows[2:]] == [f"{b}: not in your upload" for b in bad]  # the same words whatever the reason
    written = str(up / "photos" / "img5.jpg")  # the only message with the folder's path is the name the CSV itself gave
    assert not any(str(tmp_path) in (r.error or "") for r in res.rows if r.file_x != written)
    free = run_batch(runner, up / "photos" / "pairs.csv", methods=(), limit=5)  # no root (the local CLI): as before
    assert free.rows[2].error.startswith("/etc/passwd is text, not an image") and free.rows[3].ok  # ../../x.jpg is read without a root
    with pytest.raises(DataError, match=r"^the pairs file is not in your upload$"):
        read_batch_pairs(tmp_path / "out" / "pairs.csv", root=up)
    with pytest.raises(DataError, match=r"^the images folder is not in your upload$"):
        read_batch_pairs(up / "photos" / "pairs.csv", images=DEEPFACE, root=up)
    (up / "bad.csv").write_bytes(b"\x00")
    with pytest.raises(DataError) as e:
        read_batch_pairs(up / "bad.csv", root=up)
    assert str(e.value).startswith("bad.csv is not a text CSV file") and str(up) not in str(e.value)
    rows = run_batch(runner, [("photos/img5.jpg", "../x.jpg")], methods=(), root=up).rows
    assert rows[0].error == "../x.jpg: not in your upload"
    (up / "gallery" / "a").mkdir(parents=True)
    for f in ("img5.jpg", "img10.jpg"):
        (up / "gallery" / "a" / f).symlink_to(up / "photos" / f)
    (up / "gallery" / "b").symlink_to(DEEPFACE.parent / "misc")  # a sub-folder out: its photos are not even listed
    pairs, _ = read_batch_pairs(up / "gallery", root=up)
    assert [(p.file_x, p.file_y) for p in pairs] == [("a/img10.jpg", "a/img5.jpg")]


@pytest.mark.needs_data
def test_a_batch_written_with_the_old_hiding_value_names_resumes(runner, tmp_path, monkeypatch):
    """Batches written before the hiding value had one name (``patch_fill``, ``hide``,
    ``agg_start="hide"``) resume under today's names, and still refuse other values."""
    out = tmp_path / "out"
    pairs = [("img5.jpg", "img10.jpg"), ("img5.jpg", "img12.jpg")]
    run_batch(runner, pairs, DEEPFACE, methods=(), out=out, hide="grey", agg_start="hide")
    meta = json.loads((out / "batch.json").read_text())
    assert meta["knobs"] == {"fill": "grey", "agg_start": "fill"}  # written under today's names
    meta["knobs"] = {"patch_fill": "grey", "agg_start": "hide"}  # as an older version wrote it
    (out / "batch.json").write_text(json.dumps(meta))
    r, calls = _counted(runner, monkeypatch)
    run_batch(r, pairs, DEEPFACE, methods=(), out=out, resume=True, fill="grey", agg_start="fill")
    assert calls["explain"] == 0
    with pytest.raises(DataError, match=r"other settings.*knobs"):
        run_batch(runner, pairs, DEEPFACE, methods=(), out=out, resume=True, fill="white", agg_start="fill")
