"""benchmarks/load_app.py: the loopback refusal and the summary maths without a server, and one
slow run against a real local server."""

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import load_app
from benchmarks.load_app import CLEAR_ERROR, FAILURE, OK, TIMEOUT, Outcome

from ..conftest import ROOT


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:7860", "http://127.0.0.1:7860/"),
        ("http://127.8.9.10:1234/some/path", "http://127.8.9.10:1234/"),
        ("http://[::1]:7860/", "http://[::1]:7860/"),
        ("http://LocalHost:7860", "http://LocalHost:7860/"),
        ("https://localhost", "https://localhost/"),
    ],
)
def test_loopback_urls_are_accepted(url, expected):
    assert load_app.loopback_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:7860", "http://0.0.0.0:7860", "http://192.168.1.20", "http://example.com:7860", "http://localhost.example.com",
     "http://[::2]:7860", "http://128.0.0.1", "ftp://127.0.0.1", "127.0.0.1:7860", "http://:7860"],
)  # fmt: skip
def test_other_hosts_are_refused(url):
    with pytest.raises(ValueError, match=r"loopback|http://"):
        load_app.loopback_url(url)


def test_main_refuses_a_remote_url_before_sending_anything(capsys):
    with pytest.raises(SystemExit) as e:
        load_app.main(["--url", "http://192.168.0.10:7860", "-n", "1"])
    assert e.value.code == 2
    assert "not a loopback address" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-n", "0"], ["-n", "201"], ["-c", "0"], ["-c", "33"], ["--bad", "1.5"], ["--timeout", "0"]])
def test_bounds_are_enforced(argv, capsys):
    with pytest.raises(SystemExit) as e:
        load_app.parse_args(["--url", "http://127.0.0.1:9", *argv])
    assert e.value.code == 2


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 20, 101):
        xs = list(rng.lognormal(0.5, 0.7, n))
        for q in (0, 50, 90, 99, 100):
            assert load_app.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert load_app.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert load_app.percentile([], 50) is None


def test_bad_requests_are_spread_evenly():
    assert load_app.bad_indices(20, 0.1) == {5, 15}
    assert load_app.bad_indices(8, 0.25) == {2, 6}
    assert load_app.bad_indices(10, 0.0) == set()
    assert load_app.bad_indices(4, 1.0) == {0, 1, 2, 3}


def _synthetic() -> list[Outcome]:
    good = [Outcome(i, "good", OK, float(i + 1), "The same person") for i in range(8)]  # 1..8 s
    bad = [Outcome(8, "bad", CLEAR_ERROR, 0.2, "x.jpg: not an image"), Outcome(9, "bad", CLEAR_ERROR, 0.5, "x.jpg: not an image")]
    return [*good, *bad]


def test_summary_counts_percentiles_and_throughput():
    s = load_app.summarize(_synthetic(), wall_s=5.0)
    assert (s["requests"], s[OK], s[CLEAR_ERROR], s[TIMEOUT], s[FAILURE]) == (10, 8, 2, 0, 0)
    assert s["by_kind"] == {"bad": {OK: 0, CLEAR_ERROR: 2, TIMEOUT: 0, FAILURE: 0}, "good": {OK: 8, CLEAR_ERROR: 0, TIMEOUT: 0, FAILURE: 0}}
    lat = s["latency_s"]  # only the answered good requests: 1..8 s
    assert lat["n"] == 8 and lat["p50"] == 4.5 and lat["max"] == 8.0 and lat["mean"] == 4.5
    assert lat["p90"] == pytest.approx(7.3) and lat["p99"] == pytest.approx(7.93)
    assert s["clear_error_max_s"] == 0.5
    assert s["throughput_rps"] == pytest.approx(10 / 5.0)
    assert s["answers"] == {"The same person": 8} and s["errors"] == {"clear_error: x.jpg: not an image": 2}
    alone = load_app.summarize([Outcome(-2, "good", OK, 1.5), Outcome(-3, "good", OK, 2.5)])
    assert load_app.ratio(lat["p50"], alone["latency_s"]["p50"]) == pytest.approx(4.5 / 2.0)
    assert load_app.ratio(None, 2.0) is None and load_app.ratio(1.0, None) is None


def test_exit_rule_needs_an_answer_or_a_clear_error():
    outcomes = _synthetic()
    assert load_app.all_answered(outcomes)
    assert not load_app.all_answered([*outcomes, Outcome(10, "good", TIMEOUT, 300.0, "no answer within 300 s")])
    assert not load_app.all_answered([*outcomes, Outcome(10, "bad", FAILURE, 0.1, "AppError without a message")])


def test_unreachable_loopback_server_is_a_clear_failure(tmp_path, capsys):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    port = load_app._free_port()  # nothing listens there
    code = load_app.main(["--url", f"http://127.0.0.1:{port}", "-n", "1", "--photos", str(photo), str(photo), "--max-seconds", "30"])
    assert code == 1
    assert "could not reach the app" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.needs_data
def test_four_requests_two_at_a_time_against_a_real_server():
    cmd = [sys.executable, "benchmarks/load_app.py", "-n", "4", "-c", "2", "--alone", "1", "--json", "--max-seconds", "170"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)
    c = r["concurrent"]
    assert (c["requests"], c[OK], c[CLEAR_ERROR], c[TIMEOUT], c[FAILURE]) == (4, 4, 0, 0, 0)
    assert r["all_answered"] and r["own_server"] and r["url"].startswith("http://127.0.0.1:")
    assert all(a.startswith("The same person") for a in c["answers"])
    assert c["latency_s"]["p50"] > 0 and c["throughput_rps"] > 0 and r["ratio_p50"] > 0


def test_distinct_copies_differ_faintly(tmp_path):
    from PIL import Image

    src = tmp_path / "face.jpg"
    Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(src)
    a, b = (np.asarray(Image.open(load_app.distinct_copy(src, tmp_path, i)), dtype=int) for i in (0, 1))
    again = np.asarray(Image.open(load_app.distinct_copy(src, tmp_path, 0)), dtype=int)
    ref = np.asarray(Image.open(src), dtype=int)
    assert a.shape == b.shape == ref.shape
    assert (a != b).any() and (again == a).all()  # distinct per request, the same for the same request
    assert np.abs(a - ref).max() <= 2  # faint: at most 2 grey levels
