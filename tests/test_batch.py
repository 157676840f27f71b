"""The batch path: a pairs CSV or a folder -> rows, a saved folder that reopens, the table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.batch import (
    BatchRow,
    filter_rows,
    load_batch,
    pair_result,
    pair_view,
    read_batch_pairs,
    rows_table,
    run_batch,
    sort_rows,
)
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
