"""Benchmark pair lists as published: LFW's (and XQLFW's) pairs.txt, CALFW's and CPLFW's pair
lists, told apart from a CSV, read into pairs whose files resolve under the images folder."""

from __future__ import annotations

import logging

import pytest

from core.batch import BatchPair, read_batch_pairs, read_lfw_pairs, read_pair_list, run_batch, sniff
from core.batch import formats as fmt
from core.errors import DataError

from .conftest import DEEPFACE, PEOPLE

# Two sets of one matched then one mismatched pair
LFW_TWO_SETS = "2\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\nCat_C\t1\t2\nCat_C\t2\tDan_D\t1\n"
# One set (a single number: N matched then N mismatched), spaces instead of tabs
LFW_ONE_SET = "2\nAnn_A 1 2\nDan_D 1 2\nAnn_A 2 Cat_C 1\nBob_B 2 Dan_D 2\n"


def _write(path, text, newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode())
    return path


@pytest.fixture(scope="module")
def flat_images(tmp_path_factory):
    """An images folder laid out flat, as CALFW's (``name_0001.jpg``) and CPLFW's (``name_1.jpg``)."""
    if not DEEPFACE.is_dir():
        pytest.skip(f"real test images not found at {DEEPFACE}")
    root = tmp_path_factory.mktemp("flat")
    for person, photos in PEOPLE.items():
        for i, photo in enumerate(photos, 1):
            (root / f"{person}_{i:04d}.jpg").symlink_to(DEEPFACE / photo)
            (root / f"{person}_{i}.jpg").symlink_to(DEEPFACE / photo)
    return root


def _triples(pairs):
    return [(p.file_x, p.file_y, p.same, p.fold) for p in pairs]


# -- LFW pairs.txt --------------------------------------------------------------------------------
def test_lfw_sets_header_gives_matched_then_mismatched_pairs_with_folds(tmp_path):
    pairs = read_lfw_pairs(_write(tmp_path / "pairs.txt", LFW_TWO_SETS))
    assert _triples(pairs) == [
        ("Ann_A/Ann_A_0001.jpg", "Ann_A/Ann_A_0002.jpg", True, 0),
        ("Ann_A/Ann_A_0001.jpg", "Bob_B/Bob_B_0001.jpg", False, 0),
        ("Cat_C/Cat_C_0001.jpg", "Cat_C/Cat_C_0002.jpg", True, 1),
        ("Cat_C/Cat_C_0002.jpg", "Dan_D/Dan_D_0001.jpg", False, 1),
    ]


def test_lfw_single_number_header_is_one_set(tmp_path):
    pairs = read_lfw_pairs(_write(tmp_path / "pairsDevTest.txt", LFW_ONE_SET))
    assert [p.same for p in pairs] == [True, True, False, False] and {p.fold for p in pairs} == {0}
    assert pairs[3] == BatchPair("Bob_B/Bob_B_0002.jpg", "Dan_D/Dan_D_0002.jpg", False, 0)


def test_lfw_numbers_are_zero_padded_to_four_digits(tmp_path):
    p, q = read_lfw_pairs(_write(tmp_path / "pairs.txt", "1\nGeorge_W_Bush 7 12345\nA_B 1 C_D 10\n"))
    assert (p.file_x, p.file_y) == ("George_W_Bush/George_W_Bush_0007.jpg", "George_W_Bush/George_W_Bush_12345.jpg")
    assert (q.file_x, q.file_y) == ("A_B/A_B_0001.jpg", "C_D/C_D_0010.jpg")


def test_lfw_tolerates_crlf_mixed_whitespace_and_a_trailing_blank_line(tmp_path):
    text = "2 1\nAnn_A \t1  2\nAnn_A\t1 Bob_B\t1\nCat_C 1\t2\nCat_C\t2\tDan_D\t1\n\n"
    crlf = read_lfw_pairs(_write(tmp_path / "crlf.txt", text, "\r\n"))
    assert _triples(crlf) == _triples(read_lfw_pairs(_write(tmp_path / "lf.txt", LFW_TWO_SETS)))
    with_bom = tmp_path / "bom.txt"
    with_bom.write_bytes(b"\xef\xbb\xbf" + LFW_TWO_SETS.encode())
    assert _triples(read_lfw_pairs(with_bom)) == _triples(crlf)


def test_lfw_line_forms_must_match_the_header(tmp_path):
    # three matched lines where the header announces two: the third is where a mismatched one should be
    text = "1\t2\nAnn_A 1 2\nBob_B 1 2\nCat_C 1 2\nAnn_A 1 Dan_D 1\n"
    with pytest.raises(DataError, match=r"^pairs\.txt, line 4: expected a mismatched pair `name1 n1 name2 n2`, got 3 fields \(set 1 of 1"):
        read_lfw_pairs(_write(tmp_path / "pairs.txt", text), "pairs.txt")
    text = "2\t1\nAnn_A 1 2\nAnn_A 1 Bob_B 1\nCat_C 1 Dan_D 1\nCat_C 1 2\n"  # set 2 starts with a mismatched line
    with pytest.raises(DataError, match=r"line 4: expected a matched pair `name n1 n2`, got 4 fields \(set 2 of 2"):
        read_lfw_pairs(_write(tmp_path / "p2.txt", text))
    with pytest.raises(DataError, match=r"line 2: expected a matched pair `name n1 n2`, but field 3 \('two'\) is not an image number"):
        read_lfw_pairs(_write(tmp_path / "p3.txt", "1\nAnn_A 1 two\nAnn_A 1 Bob_B 1\n"))
    with pytest.raises(DataError, match=r"line 3: '\.\./x' is not a person's name"):
        read_lfw_pairs(_write(tmp_path / "p4.txt", "1\nAnn_A 1 2\nAnn_A 1 ../x 1\n"))


def test_lfw_line_count_must_match_the_header(tmp_path):
    short = _write(tmp_path / "short.txt", "2\t1\nAnn_A 1 2\nAnn_A 1 Bob_B 1\n\n")
    with pytest.raises(DataError, match=r"short\.txt, line 4: the file ends after 2 of 4 pairs; its header \(line 1\) announces 2 set\(s\)"):
        read_lfw_pairs(short)
    long = _write(tmp_path / "long.txt", LFW_TWO_SETS + "Ann_A 1 2\n")
    with pytest.raises(DataError, match=r"long\.txt, line 6: more pairs than the header announces"):
        read_lfw_pairs(long)
    with pytest.raises(DataError, match=r"header\.txt, line 2: the file ends after 0 of 2 pairs"):  # a header and nothing else
        read_lfw_pairs(_write(tmp_path / "header.txt", "1\n"), "header.txt")


def test_lfw_header_errors(tmp_path):
    with pytest.raises(DataError, match=r"bad\.txt, line 1: expected a header of one or two whole numbers"):
        read_lfw_pairs(_write(tmp_path / "bad.txt", "ten 300\nAnn_A 1 2\n"))
    with pytest.raises(DataError, match=r"line 1: the header announces no pairs \(0 300\)"):
        read_lfw_pairs(_write(tmp_path / "zero.txt", "0 300\n"))
    with pytest.raises(DataError, match=r"is empty"):
        read_lfw_pairs(_write(tmp_path / "empty.txt", "\n\n"))
    with pytest.raises(DataError, match=r"no such file"):
        read_lfw_pairs(tmp_path / "nope.txt")


# -- CALFW / CPLFW pair lists ---------------------------------------------------------------------
CALFW = "Ann_A_0001.jpg 1\nAnn_A_0002.jpg 1\nAnn_A_0001.jpg 0\nBob_B_0001.jpg 0\nCat_C_0001.jpg 1\nCat_C_0002.jpg 1\n"
CPLFW = "Dan_D_1.jpg\t3\nDan_D_2.jpg\t3\nDan_D_1.jpg\t0\nCat_C_2.jpg\t0\n"


def test_calfw_and_cplfw_lines_pair_up_by_twos_and_label_0_is_different(tmp_path):
    pairs = read_pair_list(_write(tmp_path / "pairs_CALFW.txt", CALFW, "\r\n"))
    assert _triples(pairs) == [
        ("Ann_A_0001.jpg", "Ann_A_0002.jpg", True, None),
        ("Ann_A_0001.jpg", "Bob_B_0001.jpg", False, None),
        ("Cat_C_0001.jpg", "Cat_C_0002.jpg", True, None),
    ]
    pairs = read_pair_list(_write(tmp_path / "pairs_CPLFW.txt", CPLFW + "\n"))  # any non-zero label is the same person
    assert _triples(pairs) == [("Dan_D_1.jpg", "Dan_D_2.jpg", True, None), ("Dan_D_1.jpg", "Cat_C_2.jpg", False, None)]


def test_pair_list_errors_name_the_line(tmp_path):
    with pytest.raises(DataError, match=r"odd\.txt, line 5: this last line has no second line to make a pair with \(5 lines"):
        read_pair_list(_write(tmp_path / "odd.txt", CALFW.rsplit("\n", 2)[0] + "\n"), "odd.txt")
    with pytest.raises(DataError, match=r"line 3: the label 'zero' is not an integer"):
        read_pair_list(_write(tmp_path / "word.txt", "a.jpg 1\nb.jpg 1\nc.jpg zero\nd.jpg 0\n"))
    with pytest.raises(DataError, match=r"line 4: label 0, but the pair's first line \(line 3\) has label 1; the two lines of a pair share"):
        read_pair_list(_write(tmp_path / "mixed.txt", "a.jpg 1\nb.jpg 1\nc.jpg 1\nd.jpg 0\n"))
    with pytest.raises(DataError, match=r"line 2: expected `filename label`, got 3 fields"):
        read_pair_list(_write(tmp_path / "three.txt", "a.jpg 1\nb c.jpg 1\n"))
    with pytest.raises(DataError, match=r"is empty"):
        read_pair_list(_write(tmp_path / "empty.txt", ""))


# -- reading: size, encodings, sniffing -----------------------------------------------------------
def test_files_over_the_size_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "MAX_PAIRS_BYTES", 16)
    with pytest.raises(DataError, match=r"big\.txt is 0 MiB, over the 0 MiB limit for a pair list"):
        read_lfw_pairs(_write(tmp_path / "big.txt", LFW_TWO_SETS), "big.txt")
    assert fmt.MAX_PAIRS_BYTES == 16 and sniff(tmp_path / "big.txt") == "lfw"  # sniffing only reads the start


def test_latin1_is_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "pairs.txt"
    path.write_bytes("1\nJos\u00e9 1 2\nJos\u00e9 1 Ann_A 1\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="core.batch.formats"):
        pairs = read_lfw_pairs(path)
    assert pairs[0].file_x == "Jos\u00e9/Jos\u00e9_0001.jpg" and "Latin-1" in caplog.text
    path.write_bytes("1\nJos\u00e9 1 2\nJos\u00e9 1 Ann_A 1\n".encode())
    assert read_lfw_pairs(path)[0].file_x == "Jos\u00e9/Jos\u00e9_0001.jpg"


def test_sniff_tells_benchmark_lists_from_csvs(tmp_path):
    assert sniff(_write(tmp_path / "pairs.txt", LFW_TWO_SETS)) == "lfw"
    assert sniff(_write(tmp_path / "dev.txt", "\n1100\r\n")) == "lfw"
    assert sniff(_write(tmp_path / "pairs_CALFW.txt", CALFW)) == "pair_list"
    assert sniff(_write(tmp_path / "pairs_CPLFW.txt", CPLFW, "\r\n")) == "pair_list"
    assert sniff(_write(tmp_path / "p.txt", "file_x,file_y,same\na.jpg,b.jpg,1\n")) is None  # a CSV, whatever its suffix
    assert sniff(_write(tmp_path / "i.csv", "file,identity\na.jpg,x\n")) is None
    assert sniff(_write(tmp_path / "t.txt", "file_x\tfile_y\na.jpg\tb.jpg\n")) is None
    assert sniff(_write(tmp_path / "a.csv", "a,b\n1,2\n")) is None
    assert sniff(_write(tmp_path / "words.txt", "a.jpg 1\nsome words here\n")) is None
    assert sniff(tmp_path / "nope.txt") is None and sniff(tmp_path) is None
    (tmp_path / "u16.txt").write_bytes("1\nAnn_A 1 2\n".encode("utf-16"))
    assert sniff(tmp_path / "u16.txt") is None


def test_csv_sources_keep_their_behaviour_and_messages(tmp_path):
    (tmp_path / "p.txt").write_text("file_x,file_y,same\nx.jpg,y.jpg,1\n")  # a CSV saved as .txt
    pairs, base = read_batch_pairs(tmp_path / "p.txt")
    assert pairs == [BatchPair("x.jpg", "y.jpg", True)] and pairs[0].fold is None and base == tmp_path
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="missing column"):
        read_batch_pairs(tmp_path / "bad.csv")


# -- through read_batch_pairs and run_batch -------------------------------------------------------
@pytest.mark.needs_data
def test_read_batch_pairs_resolves_every_lfw_file(tmp_path, lfw_images):
    _write(tmp_path / "pairs.txt", LFW_TWO_SETS, "\r\n")
    _write(tmp_path / "pairsDevTest.txt", LFW_ONE_SET)
    for name in ("pairs.txt", "pairsDevTest.txt"):
        pairs, base = read_batch_pairs(tmp_path / name, images=lfw_images)
        assert base == lfw_images and len(pairs) == 4
        assert all((base / f).is_file() for p in pairs for f in (p.file_x, p.file_y))
    pairs, _ = read_batch_pairs(tmp_path / "pairs.txt", images=lfw_images, per_label=1)
    assert _triples(pairs) == [("Ann_A/Ann_A_0001.jpg", "Ann_A/Ann_A_0002.jpg", True, 0), ("Ann_A/Ann_A_0001.jpg", "Bob_B/Bob_B_0001.jpg", False, 0)]


def test_a_rooted_pairs_txt_names_itself_relative_to_the_upload(tmp_path):
    (tmp_path / "up").mkdir()
    bad = _write(tmp_path / "up" / "pairs.txt", "1\nAnn_A 1 2\nAnn_A 1 2\n")
    with pytest.raises(DataError, match=r"^pairs\.txt, line 3: expected a mismatched pair") as e:
        read_batch_pairs(bad, root=tmp_path / "up")
    assert str(tmp_path) not in str(e.value)


@pytest.mark.needs_data
def test_read_batch_pairs_resolves_every_calfw_and_cplfw_file(tmp_path, flat_images):
    for name, text in (("pairs_CALFW.txt", CALFW), ("pairs_CPLFW.txt", CPLFW)):
        pairs, base = read_batch_pairs(_write(tmp_path / name, text), images=flat_images)
        assert base == flat_images and pairs and all((base / f).is_file() for p in pairs for f in (p.file_x, p.file_y))
        assert all(p.fold is None for p in pairs)


@pytest.mark.needs_data
def test_run_batch_on_lfw_pairs_gives_labelled_rows_with_decisions(runner, tmp_path, lfw_images):
    pairs_txt = _write(tmp_path / "pairs.txt", LFW_TWO_SETS)
    res = run_batch(runner, pairs_txt, images=lfw_images, methods=())
    assert [r.label for r in res.rows] == ["same", "different", "same", "different"]
    assert all(r.ok and r.decision in ("same", "different") and r.correct is (r.decision == r.label) for r in res.rows)
    assert res.rows[0].decision == "same" and res.rows[1].decision == "different"  # img5/img10 and img5/img12: easy pairs
    assert res.summary()["n_labelled"] == 4
